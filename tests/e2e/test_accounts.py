"""Registration, email verification, login answers, /me, password change and reset, end to end
through the HTTP app on the embedded backends and on PostgreSQL + Redis."""

import asyncio
import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select

from adapters.storage.tables import one_time_tokens
from entrypoints.settings import Settings
from tests.e2e.conftest import FRONTEND, Service
from tests.e2e.identity_helpers import (
    FAST_ARGON2,
    NEW_PASSWORD,
    PASSWORD,
    assert_invalid_token,
    audit_rows,
    last_link,
    login,
    login_response,
    me,
    refresh,
    register,
    register_verified,
    sent_mail,
    service_with,
    set_cookies,
    set_user_status,
    unique_email,
)

VOLATILE_HEADERS = {"x-request-id", "date"}


@pytest.fixture
async def service(service_settings: Settings, redis_namespace: str) -> AsyncIterator[Service]:
    """The shared service fixture with argon2 at OWASP's floor, to keep these many logins quick."""
    async with service_with(service_settings, redis_namespace, **FAST_ARGON2) as svc:
        yield svc


def comparable(response: httpx.Response) -> tuple[int, bytes, dict[str, str]]:
    """Everything a client can observe, except headers that differ on every request anyway."""
    headers = {k: v for k, v in response.headers.items() if k.lower() not in VOLATILE_HEADERS}
    return response.status_code, response.content, headers


# -- register ----------------------------------------------------------------------------------


async def test_register_answers_verification_sent_and_mails_a_frontend_link(service: Service) -> None:
    email = unique_email()
    r = await register(service.client, email)
    assert r.status_code == 202, r.text
    assert r.json() == {"status": "verification_sent"}
    [mail] = sent_mail(service, email)
    assert f"{FRONTEND}/verify-email?token=" in mail.body


async def test_register_with_an_existing_address_answers_the_same_and_warns_the_owner(
    service: Service,
) -> None:
    email = await register_verified(service)
    before = len(sent_mail(service, email))
    fresh = await register(service.client, unique_email())
    again = await register(service.client, email.upper(), "another long passphrase here", "Mallory")
    assert comparable(again) == comparable(fresh)
    new_mail = sent_mail(service, email)[before:]
    assert [m.subject for m in new_mail] == ["Someone tried to register with your address"]
    assert "verify-email?token=" not in new_mail[0].body
    # The existing account is untouched: its own password still logs in.
    assert (await login_response(service.client, email)).status_code == 200


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("too short pw", "at least 15 characters"),
        ("1q2w3e4r5t6y7u8i9o0p", "too common"),
        ("my name is zebrafish-keeper and I trade", "email"),
    ],
    ids=["too_short", "common", "contains_email_local_part"],
)
async def test_register_refuses_weak_passwords(service: Service, password: str, why: str) -> None:
    r = await register(service.client, "zebrafish-keeper@example.com", password)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "weak_password"
    assert why in body["detail"]
    assert sent_mail(service, "zebrafish-keeper@example.com") == []


async def test_register_refuses_an_invalid_email(service: Service) -> None:
    r = await register(service.client, "not-an-address")
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_email"


async def test_register_refuses_unknown_fields(service: Service) -> None:
    r = await service.client.post(
        "/api/v1/auth/register",
        json={
            "email": unique_email(),
            "password": PASSWORD,
            "display_name": "Eve",
            "platform_role": "platform_administrator",
        },
    )
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "platform_role"


# -- verify-email ------------------------------------------------------------------------------


async def test_verification_link_works_once(service: Service) -> None:
    email = unique_email()
    await register(service.client, email)
    token = last_link(service, email, "verify-email")
    first = await service.client.post("/api/v1/auth/verify-email", json={"token": token})
    assert first.status_code == 200, first.text
    second = await service.client.post("/api/v1/auth/verify-email", json={"token": token})
    assert second.status_code == 400, second.text
    assert second.json()["code"] == "invalid_or_expired_token"


async def test_verification_link_expires(service_settings: Settings, redis_namespace: str) -> None:
    async with service_with(service_settings, redis_namespace, verify_email_ttl_seconds=1) as service:
        email = unique_email()
        await register(service.client, email)
        token = last_link(service, email, "verify-email")
        await asyncio.sleep(1.1)
        r = await service.client.post("/api/v1/auth/verify-email", json={"token": token})
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "invalid_or_expired_token"
        assert (await login_response(service.client, email)).json()["code"] == "email_not_verified"


async def test_mailed_tokens_are_stored_only_as_their_sha256(service: Service) -> None:
    email = unique_email()
    await register(service.client, email)
    await service.client.post("/api/v1/auth/password/forgot", json={"email": email})
    raws = [last_link(service, email, "verify-email"), last_link(service, email, "reset-password")]
    async with service.container.engine.connect() as conn:
        rows = [tuple(str(v) for v in row) for row in await conn.execute(select(one_time_tokens))]
    stored = " ".join(" ".join(row) for row in rows)
    hashes = {row[0] for row in rows}
    for raw in raws:
        assert raw not in stored
        assert hashlib.sha256(raw.encode()).hexdigest() in hashes


# -- resend ------------------------------------------------------------------------------------


async def test_resend_answers_202_for_unknown_verified_and_unverified_addresses(service: Service) -> None:
    verified = await register_verified(service)
    unverified = unique_email()
    await register(service.client, unverified)
    old_token = last_link(service, unverified, "verify-email")
    mails_before = {a: len(sent_mail(service, a)) for a in (verified, unverified)}

    answers = [
        await service.client.post("/api/v1/auth/verify-email/resend", json={"email": address})
        for address in (unique_email("nobody"), verified, unverified)
    ]
    assert {r.status_code for r in answers} == {202}
    assert len({r.content for r in answers}) == 1

    assert len(sent_mail(service, verified)) == mails_before[verified]
    assert len(sent_mail(service, unverified)) == mails_before[unverified] + 1
    new_token = last_link(service, unverified, "verify-email")
    assert new_token != old_token
    stale = await service.client.post("/api/v1/auth/verify-email", json={"token": old_token})
    assert stale.status_code == 400, stale.text
    fresh = await service.client.post("/api/v1/auth/verify-email", json={"token": new_token})
    assert fresh.status_code == 200, fresh.text


# -- login -------------------------------------------------------------------------------------


async def test_login_returns_a_bearer_token_and_a_locked_down_refresh_cookie(service: Service) -> None:
    email = await register_verified(service)
    r = await login_response(service.client, email)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["access_token"].count(".") == 2
    assert body["user"]["email"] == email and body["user"]["email_verified"] is True
    [header] = [h for h in r.headers.get_list("set-cookie") if h.startswith("bulwark_refresh=")]
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in header.split(";")[1:]}
    assert "httponly" in attributes and "secure" in attributes
    assert attributes["samesite"].lower() == "samesite=strict"
    assert attributes["path"] == "Path=/api/v1/auth"
    cookie = set_cookies(r)["bulwark_refresh"]
    assert len(cookie.value) >= 43  # 256 bits, base64url


async def test_unknown_email_and_wrong_password_get_identical_answers(service: Service) -> None:
    email = await register_verified(service)
    wrong_password = await login_response(service.client, email, "not the right passphrase at all")
    unknown_email = await login_response(service.client, unique_email(), "not the right passphrase at all")
    assert wrong_password.status_code == 401
    assert wrong_password.json()["code"] == "invalid_credentials"
    assert comparable(wrong_password) == comparable(unknown_email)


async def test_login_before_verification_is_refused(service: Service) -> None:
    email = unique_email()
    await register(service.client, email)
    r = await login_response(service.client, email)
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "email_not_verified"
    assert "set-cookie" not in r.headers


async def test_login_of_a_suspended_account_is_refused(service: Service) -> None:
    email = await register_verified(service)
    await set_user_status(service, email, "suspended")
    r = await login_response(service.client, email)
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "account_suspended"
    assert "set-cookie" not in r.headers


# -- /me ---------------------------------------------------------------------------------------


async def test_me_shows_the_user_current_org_platform_role_and_memberships(service: Service) -> None:
    email = await register_verified(service)
    session = await login(service.client, email)
    r = await me(service.client, session.access)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"]["email"] == email
    assert body["platform_role"] == "user"
    org = body["current_org"]
    assert org["personal"] is True and org["status"] == "active"
    assert body["memberships"] == [{"org": org, "role": "administrator"}]


async def test_me_without_a_bearer_token_is_refused(service: Service) -> None:
    r = await service.client.get("/api/v1/me")
    assert r.status_code == 401, r.text


# -- change password ---------------------------------------------------------------------------


async def test_change_password_checks_the_current_one_and_the_policy(service: Service) -> None:
    email = await register_verified(service)
    session = await login(service.client, email)
    wrong = await service.client.post(
        "/api/v1/me/password",
        json={"current_password": "not my current passphrase", "new_password": NEW_PASSWORD},
        headers=session.headers,
    )
    assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_credentials", wrong.text
    weak = await service.client.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=session.headers,
    )
    assert weak.status_code == 400 and weak.json()["code"] == "weak_password", weak.text
    # Neither attempt changed anything.
    assert (await login_response(service.client, email)).status_code == 200


async def test_change_password_revokes_every_other_session(service: Service) -> None:
    email = await register_verified(service)
    current = await login(service.client, email)
    other = await login(service.client, email)
    r = await service.client.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=current.headers,
    )
    assert r.status_code == 204, r.text
    assert_invalid_token(await me(service.client, other.access))
    assert (await refresh(service.client, other.refresh)).status_code == 401
    assert (await me(service.client, current.access)).status_code == 200
    assert (await refresh(service.client, current.refresh)).status_code == 200
    assert (await login_response(service.client, email)).status_code == 401
    assert (await login_response(service.client, email, NEW_PASSWORD)).status_code == 200


# -- forgot / reset ----------------------------------------------------------------------------


async def test_forgot_password_answers_identically_for_unknown_and_known_addresses(
    service: Service,
) -> None:
    email = await register_verified(service)
    nobody = unique_email("nobody")
    known = await service.client.post("/api/v1/auth/password/forgot", json={"email": email})
    unknown = await service.client.post("/api/v1/auth/password/forgot", json={"email": nobody})
    assert known.status_code == 202, known.text
    assert comparable(known) == comparable(unknown)
    assert sent_mail(service, nobody) == []
    assert f"{FRONTEND}/reset-password?token=" in sent_mail(service, email)[-1].body


async def test_password_reset_sets_the_password_and_revokes_every_session(service: Service) -> None:
    email = await register_verified(service)
    first = await login(service.client, email)
    second = await login(service.client, email)
    await service.client.post("/api/v1/auth/password/forgot", json={"email": email})
    token = last_link(service, email, "reset-password")

    r = await service.client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert r.status_code == 204, r.text
    for old in (first, second):
        assert_invalid_token(await me(service.client, old.access))
        assert (await refresh(service.client, old.refresh)).status_code == 401
    assert (await login_response(service.client, email)).status_code == 401
    fresh = await login(service.client, email, NEW_PASSWORD)
    assert (await me(service.client, fresh.access)).status_code == 200

    again = await service.client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": "yet another fine passphrase"}
    )
    assert again.status_code == 400 and again.json()["code"] == "invalid_or_expired_token", again.text
    assert (await login_response(service.client, email, NEW_PASSWORD)).status_code == 200


async def test_weak_reset_password_is_refused_without_burning_the_link(service: Service) -> None:
    email = await register_verified(service)
    await service.client.post("/api/v1/auth/password/forgot", json={"email": email})
    token = last_link(service, email, "reset-password")
    weak = await service.client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": "1q2w3e4r5t6y7u8i9o0p"}
    )
    assert weak.status_code == 400 and weak.json()["code"] == "weak_password", weak.text
    r = await service.client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert r.status_code == 204, r.text
    assert (await login_response(service.client, email, NEW_PASSWORD)).status_code == 200


async def test_reset_link_expires(service_settings: Settings, redis_namespace: str) -> None:
    async with service_with(service_settings, redis_namespace, reset_password_ttl_seconds=1) as service:
        email = await register_verified(service)
        await service.client.post("/api/v1/auth/password/forgot", json={"email": email})
        token = last_link(service, email, "reset-password")
        await asyncio.sleep(1.1)
        r = await service.client.post(
            "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
        )
        assert r.status_code == 400 and r.json()["code"] == "invalid_or_expired_token", r.text
        assert (await login_response(service.client, email)).status_code == 200


async def test_a_reset_link_cannot_verify_an_email_or_the_reverse(service: Service) -> None:
    email = unique_email()
    await register(service.client, email)
    await service.client.post("/api/v1/auth/password/forgot", json={"email": email})
    verify = last_link(service, email, "verify-email")
    reset = last_link(service, email, "reset-password")
    r = await service.client.post("/api/v1/auth/verify-email", json={"token": reset})
    assert r.status_code == 400, r.text
    r = await service.client.post(
        "/api/v1/auth/password/reset", json={"token": verify, "new_password": NEW_PASSWORD}
    )
    assert r.status_code == 400, r.text


async def test_patch_me_changes_the_display_name_at_once_and_refuses_bad_names(service: Service) -> None:
    email = await register_verified(service)
    session = await login(service.client, email)
    assert (await me(service.client, session.access)).json()["user"]["display_name"] == "Test User"
    r = await service.client.patch("/api/v1/me", json={"display_name": "  Ada L.  "}, headers=session.headers)
    assert r.status_code == 200, r.text
    assert r.json()["user"]["display_name"] == "Ada L."
    # The next GET (the fast path's) shows it at once, not after the profile cache's lifetime.
    assert (await me(service.client, session.access)).json()["user"]["display_name"] == "Ada L."
    [row] = await audit_rows(service, "user.profile_updated")
    assert row.details["before"] == {"display_name": "Test User"}
    assert row.details["after"] == {"display_name": "Ada L."}
    for bad in ("", "   ", "x" * 201, "Ada\x00", "Ada\u202e"):
        r = await service.client.patch("/api/v1/me", json={"display_name": bad}, headers=session.headers)
        assert r.status_code == 400 and "display_name" in r.text, r.text
    r = await service.client.patch(
        "/api/v1/me", json={"display_name": "Ada", "email": "x@y.z"}, headers=session.headers
    )
    assert r.status_code == 400, r.text
    assert (await service.client.patch("/api/v1/me", json={"display_name": "Nobody"})).status_code == 401
    assert (await me(service.client, session.access)).json()["user"]["display_name"] == "Ada L."
