"""The admin panel's accounts and organisations (issue 18), end to end on both backends: pause
takes effect on the very next request (bearer, refresh, login, the user's bridge), unpause
restores login only, the anti-lockout rules, logout everywhere, plans, search with keyset pages,
the account detail, and the audit trail of every action."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from adapters.storage.tables import audit_events, users
from application import keyset_cursor
from application.admin_principal import AdminPrincipal
from application.identity import RequestContext
from application.platform_admin_guard import LastPlatformAdmin, NoLongerAdmin
from domain.orgs import OrgStatus
from domain.users import UserStatus
from entrypoints.settings import Settings
from tests.e2e.admin_helpers import PanelAdmin, platform_admin
from tests.e2e.bridges.test_bridges import create_bridge, ea
from tests.e2e.conftest import Service, start_service
from tests.e2e.identity_helpers import (
    DEFAULT_IP,
    NO_BODY,
    assert_invalid_token,
    login,
    login_response,
    me,
    refresh,
    unique_email,
)
from tests.e2e.test_admin_login import admin_settings
from tests.e2e.test_orgs_and_roles import Actor, create_org, new_user

PANEL = "/api/admin/v1"
AGENT = "admin-panel-test/1.0"


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return admin_settings(backend, tmp_path, request)


@pytest.fixture
async def service(settings: Settings, redis_namespace: str) -> AsyncIterator[Service]:
    async for svc in start_service(settings, redis_namespace):
        yield svc


async def an_admin(service: Service) -> PanelAdmin:
    return await platform_admin(service, ip=DEFAULT_IP)


async def post(service: Service, admin: PanelAdmin, path: str) -> httpx.Response:
    headers = {**admin.headers, **NO_BODY, "user-agent": AGENT}
    return await service.client.post(f"{PANEL}{path}", headers=headers)


async def get(service: Service, admin: PanelAdmin, path: str, **params: Any) -> httpx.Response:
    return await service.client.get(f"{PANEL}{path}", headers=admin.headers, params=params)


async def audit(service: Service, action: str) -> list[dict[str, Any]]:
    async with service.container.engine.connect() as conn:
        rows = await conn.execute(select(audit_events).where(audit_events.c.action == action))
        return [dict(row._mapping) for row in rows]


async def status_of(service: Service, user_id: str) -> str:
    async with service.container.engine.connect() as conn:
        query = select(users.c.status).where(users.c.id == uuid.UUID(user_id))
        return str((await conn.execute(query)).scalar_one())


def assert_audited(event: dict[str, Any], admin: PanelAdmin, target: str) -> None:
    assert str(event["actor_user_id"]) == admin.user_id and event["actor_kind"] == "admin"
    assert event["target_type"] == "user" and event["target_id"] == target
    assert event["source_ip"] == DEFAULT_IP and event["user_agent"] == AGENT
    assert admin.email not in str(event["details"])  # ids only: the log is append-only
    assert event["occurred_at"] is not None


# -- pause -------------------------------------------------------------------------------------


async def test_pause_refuses_token_refresh_login_and_bridge_at_once_and_unpause_restores_login(
    service: Service,
) -> None:
    admin = await an_admin(service)
    user = await new_user(service, "paused")
    advisor = ea(service, (await create_bridge(service, user))["key"])
    assert (await advisor.start()).status_code == 200  # the key is in the worker's cache now
    assert (await advisor.beat()).status_code == 200
    assert (await me(service.client, user.access)).status_code == 200

    r = await post(service, admin, f"/users/{user.user_id}/pause")
    assert r.status_code == 200 and r.json()["status"] == "paused", r.text

    assert_invalid_token(await me(service.client, user.access))
    assert (await refresh(service.client, user.refresh)).status_code == 401
    r = await login_response(service.client, user.email)
    assert r.status_code == 403 and r.json()["code"] == "account_paused", r.text
    r = await advisor.beat()
    assert r.status_code == 403 and r.json()["code"] == "owner_unavailable", r.text

    [event] = await audit(service, "admin.user.paused")
    assert_audited(event, admin, user.user_id)
    assert event["details"]["before"] == {"status": "active"}
    assert event["details"]["after"] == {"status": "paused"}
    assert event["details"]["sessions_revoked"] == 1

    r = await post(service, admin, f"/users/{user.user_id}/unpause")
    assert r.status_code == 200 and r.json()["status"] == "active", r.text
    fresh = await login(service.client, user.email)
    assert (await me(service.client, fresh.access)).status_code == 200
    # The sessions the pause ended stay ended.
    assert_invalid_token(await me(service.client, user.access))
    assert (await refresh(service.client, user.refresh)).status_code == 401
    [event] = await audit(service, "admin.user.unpaused")
    assert_audited(event, admin, user.user_id)
    assert (event["details"]["before"], event["details"]["after"]) == (
        {"status": "paused"},
        {"status": "active"},
    )


async def test_a_user_token_never_opens_the_account_routes(service: Service) -> None:
    user = await new_user(service)
    for method, path in (("GET", "/users"), ("POST", f"/users/{user.user_id}/pause")):
        r = await service.client.request(method, f"{PANEL}{path}", headers={**user.headers, **NO_BODY})
        assert r.status_code == 401 and r.json()["code"] == "invalid_admin_session", r.text
    assert await status_of(service, user.user_id) == "active"


# -- anti-lockout ------------------------------------------------------------------------------


async def test_an_admin_cannot_pause_or_log_out_themselves(service: Service) -> None:
    admin = await an_admin(service)
    await an_admin(service)  # another active administrator: only the self rule can refuse
    for action in ("pause", "logout-everywhere"):
        r = await post(service, admin, f"/users/{admin.user_id}/{action}")
        assert r.status_code == 403 and r.json()["code"] == "self_action_forbidden", r.text
    assert await status_of(service, admin.user_id) == "active"
    assert (await get(service, admin, "/users")).status_code == 200  # their session lives on


async def test_the_last_active_platform_administrator_cannot_be_paused(service: Service) -> None:
    first, second = await an_admin(service), await an_admin(service)
    r = await post(service, first, f"/users/{second.user_id}/pause")
    assert r.status_code == 200, r.text
    # The paused administrator's own panel session ended with the pause.
    assert (await get(service, second, "/users")).status_code == 401

    # A request of `second` authenticated just before the pause (the race the lock is for):
    # pausing `first` now would leave nobody.
    now = service.container.clock.now()
    stale = AdminPrincipal(uuid.UUID(second.user_id), uuid.uuid4(), second.email, "x", now, now)
    with pytest.raises(LastPlatformAdmin):
        await service.container.admin_panel.pause_user(stale, uuid.UUID(first.user_id), RequestContext())
    assert await status_of(service, first.user_id) == "active"


async def test_two_administrators_pausing_each_other_at_once_leave_one(service: Service) -> None:
    first, second = await an_admin(service), await an_admin(service)
    answers = await asyncio.gather(
        post(service, first, f"/users/{second.user_id}/pause"),
        post(service, second, f"/users/{first.user_id}/pause"),
    )
    assert sorted(r.status_code for r in answers)[0] == 200, [r.text for r in answers]
    assert [r.status_code for r in answers].count(200) == 1, [r.text for r in answers]
    statuses = {await status_of(service, first.user_id), await status_of(service, second.user_id)}
    assert statuses == {"active", "paused"}


# -- logout everywhere -------------------------------------------------------------------------


async def test_logout_everywhere_ends_every_session_but_not_the_account(service: Service) -> None:
    admin = await an_admin(service)
    user = await new_user(service)
    other = await login(service.client, user.email)
    r = await post(service, admin, f"/users/{user.user_id}/logout-everywhere")
    assert r.status_code == 200 and r.json() == {"sessions_revoked": 2}, r.text
    for access, refresh_token in ((user.access, user.refresh), (other.access, other.refresh)):
        assert_invalid_token(await me(service.client, access))
        assert (await refresh(service.client, refresh_token)).status_code == 401
    assert (await me(service.client, (await login(service.client, user.email)).access)).status_code == 200
    [event] = await audit(service, "admin.user.logged_out_everywhere")
    assert_audited(event, admin, user.user_id)
    assert event["details"]["before"] == {"live_sessions": 2}


# -- plans -------------------------------------------------------------------------------------


async def test_plan_changes_are_validated_and_audited_with_before_and_after(service: Service) -> None:
    admin = await an_admin(service)
    user = await new_user(service)
    url = f"{PANEL}/users/{user.user_id}/plan"
    headers = {**admin.headers, "user-agent": AGENT}
    for body in ({"plan": "gold"}, {"plan": ""}, {"plan": "PRO"}, {"plan": "pro", "extra": 1}, {}):
        r = await service.client.put(url, json=body, headers=headers)
        assert r.status_code == 400, (body, r.text)
    assert (await get(service, admin, f"/users/{user.user_id}")).json()["plan"] == "free"
    assert await audit(service, "admin.user.plan_changed") == []

    r = await service.client.put(url, json={"plan": "pro"}, headers=headers)
    assert r.status_code == 200 and (r.json()["plan"], r.json()["paying"]) == ("pro", True), r.text
    [event] = await audit(service, "admin.user.plan_changed")
    assert_audited(event, admin, user.user_id)
    assert event["details"]["before"] == {"plan": "free", "paying": False}
    assert event["details"]["after"] == {"plan": "pro", "paying": True}
    assert event["details"]["request"] == {"plan": "pro"}


# -- search and detail -------------------------------------------------------------------------


async def test_users_are_searched_by_email_prefix_status_plan_and_org_in_keyset_pages(
    service: Service,
) -> None:
    admin = await an_admin(service)
    tag = uuid.uuid4().hex[:6]
    found = [await new_user(service, f"zz{tag}-{i}") for i in range(5)]
    await new_user(service, f"yy{tag}")
    expected = sorted((a.email, a.user_id) for a in found)

    # Case-insensitive on the canonical email; pages of two, in (email, id) order.
    seen: list[tuple[str, str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"email": f"ZZ{tag.upper()}", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = await get(service, admin, "/users", **params)
        assert r.status_code == 200, r.text
        seen += [(item["email"], item["id"]) for item in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == expected

    # LIKE's wildcards in the prefix are taken literally.
    assert (await get(service, admin, "/users", email="%")).json()["items"] == []
    assert (await get(service, admin, "/users", email="_z")).json()["items"] == []

    paused, pro = found[0], found[1]
    assert (await post(service, admin, f"/users/{paused.user_id}/pause")).status_code == 200
    r = await service.client.put(
        f"{PANEL}/users/{pro.user_id}/plan", json={"plan": "desk"}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    r = await get(service, admin, "/users", status="paused")
    assert [i["id"] for i in r.json()["items"]] == [paused.user_id]
    r = await get(service, admin, "/users", plan="desk")
    assert [(i["id"], i["paying"]) for i in r.json()["items"]] == [(pro.user_id, True)]
    org_id, _ = await create_org(service, found[2])
    r = await get(service, admin, "/users", org=org_id)
    assert [i["id"] for i in r.json()["items"]] == [found[2].user_id]

    for bad in (
        {"cursor": "not-a-cursor"},
        {"cursor": "W10"},  # valid base64 of [] : still no cursor
        {"limit": 0},
        {"limit": 201},
        {"limit": "ten"},
        {"status": "asleep"},
        {"plan": "gold"},
        {"org": "not-a-uuid"},
        {"email": "a\x00b"},  # a NUL would reach the database
        {"cursor": keyset_cursor.encode("a\x00", uuid.uuid4())},  # a forged cursor carrying one
    ):
        r = await get(service, admin, "/users", **bad)
        assert r.status_code == 400, (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")


async def test_the_account_detail_shows_orgs_security_sessions_and_holdings(service: Service) -> None:
    admin = await an_admin(service)
    user = await new_user(service)
    await login(service.client, user.email)  # a second live session
    org_id, user = await create_org(service, user, "Alpha Desk")
    await create_bridge(service, user)

    r = await get(service, admin, f"/users/{user.user_id}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["email"] == user.email and body["status"] == "active"
    assert (body["plan"], body["paying"], body["platform_admin"]) == ("free", False, False)
    assert {(o["id"], o["role"]) for o in body["orgs"]} >= {(org_id, "administrator")}
    assert len(body["orgs"]) == 2  # the personal org and Alpha Desk
    assert body["two_factor_enabled"] is False
    assert body["live_sessions"] == 2
    assert (body["bridges"], body["broker_connections"]) == (1, 0)
    assert body["egress_address"] is None
    assert body["last_login_at"] is not None
    assert (await get(service, admin, f"/users/{admin.user_id}")).json()["platform_admin"] is True
    assert (await get(service, admin, f"/users/{uuid.uuid4()}")).status_code == 404


async def test_orgs_are_listed_in_keyset_pages_and_shown_with_their_member_count(service: Service) -> None:
    admin = await an_admin(service)
    actor: Actor = await new_user(service, unique_email("org").split("@")[0])
    org_id, _ = await create_org(service, actor, "Listed Desk")
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        r = await get(service, admin, "/orgs", **params)
        assert r.status_code == 200, r.text
        seen += [o["id"] for o in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert org_id in seen and len(seen) == len(set(seen)) >= 3  # two personal orgs and this one
    r = await get(service, admin, f"/orgs/{org_id}")
    assert r.status_code == 200 and r.json()["members"] == 1 and r.json()["name"] == "Listed Desk", r.text
    assert (await get(service, admin, "/orgs", cursor="bad")).status_code == 400
    assert (await get(service, admin, f"/orgs/{uuid.uuid4()}")).status_code == 404


async def test_a_write_from_an_earlier_read_never_undoes_a_pause_or_a_closure(service: Service) -> None:
    """A password change or profile edit reads the account, works a while (a hash), then writes:
    the pause or closure committed meanwhile stands."""
    admin = await an_admin(service)
    target = await new_user(service, "target")
    user_id = uuid.UUID(target.user_id)
    uow = service.container.bridges.heartbeat.ports.uow
    async with uow() as unit:
        stale = await unit.users.get(user_id)
    assert stale is not None and stale.status is UserStatus.ACTIVE
    assert (await post(service, admin, f"/users/{target.user_id}/pause")).status_code == 200
    stale.display_name = "Renamed meanwhile"
    async with uow() as unit:
        await unit.users.update(stale)
        await unit.commit()
    assert await status_of(service, target.user_id) == "paused"

    async with uow() as unit:
        assert await unit.users.set_status(user_id, UserStatus.CLOSED, stale.created_at, (UserStatus.PAUSED,))
        await unit.commit()
    stale.email = "someone.else@example.com"
    async with uow() as unit:
        await unit.users.update(stale)  # nothing rewrites a closed account
        await unit.commit()
    async with service.container.engine.connect() as conn:
        row = (await conn.execute(select(users).where(users.c.id == user_id))).one()
    assert row.status == "closed" and row.email == target.email


async def test_an_action_begun_by_an_administrator_paused_meanwhile_is_refused(service: Service) -> None:
    first, second = await an_admin(service), await an_admin(service)
    target = await new_user(service, "target")
    now = service.container.clock.now()
    # `second`'s request, authenticated just before `first` paused them.
    stale = AdminPrincipal(uuid.UUID(second.user_id), uuid.uuid4(), second.email, "x", now, now)
    assert (await post(service, first, f"/users/{second.user_id}/pause")).status_code == 200
    panel = service.container.admin_panel
    with pytest.raises(NoLongerAdmin):
        await panel.set_user_plan(stale, uuid.UUID(target.user_id), "pro", RequestContext())
    with pytest.raises(NoLongerAdmin):
        await panel.logout_user_everywhere(stale, uuid.UUID(target.user_id), RequestContext())
    with pytest.raises(NoLongerAdmin):  # nor lift a pause: not even their own
        await panel.unpause_user(stale, uuid.UUID(second.user_id), RequestContext())
    with pytest.raises(NoLongerAdmin):
        await panel.set_org_status(stale, uuid.UUID(target.org_id), OrgStatus.DISABLED, RequestContext())
    assert await status_of(service, second.user_id) == "paused"
    async with service.container.engine.connect() as conn:
        plan = (
            await conn.execute(select(users.c.plan).where(users.c.id == uuid.UUID(target.user_id)))
        ).scalar()
    assert plan == "free"
