"""Refresh-token rotation and reuse detection, logout, and the user's control of their sessions,
end to end through the HTTP app on both backends."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from sqlalchemy import func, select

from adapters.storage.tables import organisations, refresh_tokens, sessions
from entrypoints.settings import Settings
from tests.e2e.conftest import Service
from tests.e2e.identity_helpers import (
    FAST_ARGON2,
    NO_BODY,
    assert_invalid_token,
    audit_rows,
    bearer,
    login,
    me,
    refresh,
    refresh_token_of,
    register_verified,
    service_with,
    set_cookies,
    set_user_status,
    with_cookie,
)


@pytest.fixture
async def service(service_settings: Settings, redis_namespace: str) -> AsyncIterator[Service]:
    """The shared service fixture with argon2 at OWASP's floor: these tests log in a lot."""
    async with service_with(service_settings, redis_namespace, **FAST_ARGON2) as svc:
        yield svc


def session_id_of(access_token: str) -> str:
    claims: dict[str, Any] = jwt.decode(access_token, options={"verify_signature": False})
    return str(claims["sid"])


async def live_refresh_tokens(service: Service, session_id: str) -> int:
    async with service.container.engine.connect() as conn:
        count = await conn.scalar(
            select(func.count())
            .select_from(refresh_tokens)
            .where(
                (refresh_tokens.c.session_id == uuid.UUID(session_id)) & refresh_tokens.c.rotated_at.is_(None)
            )
        )
    return int(count or 0)


# -- refresh -----------------------------------------------------------------------------------


async def test_refresh_rotates_the_cookie_and_issues_a_working_access_token(service: Service) -> None:
    email = await register_verified(service)
    session = await login(service.client, email)
    r = await refresh(service.client, session.refresh)
    assert r.status_code == 200, r.text
    rotated = refresh_token_of(r)
    assert rotated != session.refresh
    body = r.json()
    assert body["token_type"] == "Bearer" and body["user"]["email"] == email
    assert body["access_token"] != session.access
    assert session_id_of(body["access_token"]) == session_id_of(session.access)
    assert (await me(service.client, body["access_token"])).status_code == 200
    r = await refresh(service.client, rotated)
    assert r.status_code == 200, r.text
    assert refresh_token_of(r) not in (rotated, session.refresh)


async def test_refresh_without_a_cookie_or_with_garbage_is_refused(service: Service) -> None:
    r = await service.client.post("/api/v1/auth/refresh")
    assert r.status_code == 401 and r.json()["code"] == "invalid_refresh_token", r.text
    r = await refresh(service.client, "A" * 43)
    assert r.status_code == 401 and r.json()["code"] == "invalid_refresh_token", r.text


async def test_reusing_a_rotated_refresh_token_after_the_grace_period_revokes_the_session(
    service_settings: Settings, redis_namespace: str
) -> None:
    async with service_with(
        service_settings, redis_namespace, refresh_grace_seconds=0.3, **FAST_ARGON2
    ) as service:
        email = await register_verified(service)
        session = await login(service.client, email)
        r = await refresh(service.client, session.refresh)
        assert r.status_code == 200, r.text
        successor, new_access = refresh_token_of(r), r.json()["access_token"]
        await asyncio.sleep(0.4)

        stolen = await refresh(service.client, session.refresh)
        assert stolen.status_code == 401, stolen.text
        assert stolen.json()["code"] == "refresh_token_reused"
        # The whole family is dead: the legitimate successor and every access token of the session.
        assert (await refresh(service.client, successor)).status_code == 401
        assert_invalid_token(await me(service.client, new_access))
        assert_invalid_token(await me(service.client, session.access))

        sid = session_id_of(session.access)
        events = await audit_rows(service, "session.refresh_reuse")
        assert [e.target_id for e in events] == [sid]


async def test_a_just_rotated_refresh_token_returns_the_same_successor_within_the_grace(
    service: Service,
) -> None:
    email = await register_verified(service)
    session = await login(service.client, email)
    first = await refresh(service.client, session.refresh)
    second = await refresh(service.client, session.refresh)  # a parallel tab, moments later
    assert first.status_code == 200 and second.status_code == 200, (first.text, second.text)
    assert refresh_token_of(first) == refresh_token_of(second)
    assert (await me(service.client, second.json()["access_token"])).status_code == 200
    # Nothing was revoked: the shared successor keeps rotating.
    third = await refresh(service.client, refresh_token_of(first))
    assert third.status_code == 200, third.text
    assert await audit_rows(service, "session.refresh_reuse") == []


async def test_concurrent_refreshes_with_one_token_never_mint_two_live_successors(
    service: Service,
) -> None:
    email = await register_verified(service)
    session = await login(service.client, email)
    answers = await asyncio.gather(*(refresh(service.client, session.refresh) for _ in range(6)))
    # Within the grace every loser of the claim gets the winner's successor; nothing errors.
    assert [r.status_code for r in answers] == [200] * 6, [r.text for r in answers]
    successors = {refresh_token_of(r) for r in answers if r.status_code == 200}
    assert len(successors) == 1, successors
    assert await live_refresh_tokens(service, session_id_of(session.access)) == 1
    r = await refresh(service.client, successors.pop())
    assert r.status_code == 200, r.text


async def test_a_suspended_user_cannot_refresh(service: Service) -> None:
    email = await register_verified(service)
    session = await login(service.client, email)
    await set_user_status(service, email, "suspended")
    r = await refresh(service.client, session.refresh)
    assert r.status_code == 401, r.text
    assert "set-cookie" not in r.headers or set_cookies(r).get("bulwark_refresh") is None
    # The session ended with the refusal: reinstating the user does not bring it back.
    await set_user_status(service, email, "active")
    assert (await refresh(service.client, session.refresh)).status_code == 401


async def test_a_session_in_a_disabled_org_cannot_refresh(service: Service) -> None:
    email = await register_verified(service)
    session = await login(service.client, email)
    org_id = uuid.UUID(jwt.decode(session.access, options={"verify_signature": False})["org"])
    async with service.container.engine.begin() as conn:
        await conn.execute(
            organisations.update().where(organisations.c.id == org_id).values(status="disabled")
        )
    r = await refresh(service.client, session.refresh)
    assert r.status_code == 401, r.text


# -- logout ------------------------------------------------------------------------------------


async def test_logout_with_bearer_kills_the_access_token_on_the_next_request(service: Service) -> None:
    email = await register_verified(service)
    session = await login(service.client, email)
    assert (await me(service.client, session.access)).status_code == 200  # cached as verified
    r = await service.client.post("/api/v1/auth/logout", headers=bearer(session.access))
    assert r.status_code == 204, r.text
    cleared = set_cookies(r)["bulwark_refresh"]
    assert cleared.value == "" and cleared["max-age"] == "0" and cleared["path"] == "/api/v1/auth"
    assert_invalid_token(await me(service.client, session.access))
    assert (await refresh(service.client, session.refresh)).status_code == 401


async def test_logout_with_only_the_refresh_cookie_ends_the_session(service: Service) -> None:
    email = await register_verified(service)
    session = await login(service.client, email)
    r = await service.client.post("/api/v1/auth/logout", headers=with_cookie(session.refresh))
    assert r.status_code == 204, r.text
    assert set_cookies(r)["bulwark_refresh"].value == ""
    assert_invalid_token(await me(service.client, session.access))
    assert (await refresh(service.client, session.refresh)).status_code == 401


async def test_logout_ends_the_victims_session_not_a_tossed_lookalike(service: Service) -> None:
    # A cookie named "\xa0bulwark_refresh" (planted from a sibling domain; the browser's prefix
    # rules do not cover it) must not be read as the refresh cookie: logging out would end the
    # attacker's session and leave the victim's alive.
    victim = await login(service.client, await register_verified(service))
    attacker = await login(service.client, await register_verified(service))
    header = f"bulwark_refresh={victim.refresh}; \xa0bulwark_refresh={attacker.refresh}".encode("latin-1")
    r = await service.client.post("/api/v1/auth/logout", headers=[("cookie", header)])
    assert r.status_code == 204, r.text
    assert (await refresh(service.client, victim.refresh)).status_code == 401
    assert (await refresh(service.client, attacker.refresh)).status_code == 200


async def test_logout_without_credentials_is_refused(service: Service) -> None:
    r = await service.client.post("/api/v1/auth/logout")
    assert r.status_code == 401, r.text


# -- sessions ----------------------------------------------------------------------------------


async def test_sessions_list_marks_the_current_one(service: Service) -> None:
    email = await register_verified(service)
    laptop = await login(service.client, email)
    phone = await login(service.client, email)
    r = await service.client.get("/api/v1/me/sessions", headers=laptop.headers)
    assert r.status_code == 200, r.text
    listed = {s["id"]: s for s in r.json()["sessions"]}
    assert set(listed) == {session_id_of(laptop.access), session_id_of(phone.access)}
    assert listed[session_id_of(laptop.access)]["current"] is True
    assert listed[session_id_of(phone.access)]["current"] is False
    entry = listed[session_id_of(phone.access)]
    assert entry["ip"] == "203.0.113.7" and entry["created_at"] and entry["last_used_at"]


async def test_deleting_a_session_revokes_it_at_once(service: Service) -> None:
    email = await register_verified(service)
    laptop = await login(service.client, email)
    phone = await login(service.client, email)
    assert (await me(service.client, phone.access)).status_code == 200
    r = await service.client.delete(
        f"/api/v1/me/sessions/{session_id_of(phone.access)}", headers={**laptop.headers, **NO_BODY}
    )
    assert r.status_code == 204, r.text
    assert_invalid_token(await me(service.client, phone.access))
    assert (await refresh(service.client, phone.refresh)).status_code == 401
    assert (await me(service.client, laptop.access)).status_code == 200
    again = await service.client.delete(
        f"/api/v1/me/sessions/{session_id_of(phone.access)}", headers={**laptop.headers, **NO_BODY}
    )
    assert again.status_code == 404, again.text


async def test_another_users_session_id_is_not_found_and_stays_alive(service: Service) -> None:
    alice = await login(service.client, await register_verified(service))
    bob = await login(service.client, await register_verified(service))
    r = await service.client.delete(
        f"/api/v1/me/sessions/{session_id_of(bob.access)}", headers={**alice.headers, **NO_BODY}
    )
    assert r.status_code == 404, r.text
    assert (await me(service.client, bob.access)).status_code == 200
    assert (await refresh(service.client, bob.refresh)).status_code == 200


async def test_deleting_all_sessions_keeps_only_the_current_one(service: Service) -> None:
    email = await register_verified(service)
    current = await login(service.client, email)
    others = [await login(service.client, email) for _ in range(2)]
    r = await service.client.delete("/api/v1/me/sessions", headers={**current.headers, **NO_BODY})
    assert r.status_code == 204, r.text
    for other in others:
        assert_invalid_token(await me(service.client, other.access))
        assert (await refresh(service.client, other.refresh)).status_code == 401
    assert (await me(service.client, current.access)).status_code == 200
    listed = (await service.client.get("/api/v1/me/sessions", headers=current.headers)).json()["sessions"]
    assert [s["id"] for s in listed] == [session_id_of(current.access)]
    async with service.container.engine.connect() as conn:
        revoked = await conn.scalar(
            select(func.count()).select_from(sessions).where(sessions.c.revoked_at.is_not(None))
        )
    assert revoked == 2
