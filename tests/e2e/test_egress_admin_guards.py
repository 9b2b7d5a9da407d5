"""The admin panel's egress actions (release an address, force an allocation) are done only by a
platform administrator who still is one when the action runs, on both backends: an administrator
demoted or paused between their request's authentication and the action is refused (403
`not_an_admin`), their session is refused from then on (401), and a user's session never opens
these routes (401), even the session of a user who is an administrator. Each refusal changes
neither the ledger, nor the holder's binding, nor the audit trail."""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from adapters.storage.tables import audit_events, egress_addresses, users
from application.admin_principal import AdminPrincipal
from application.identity import RequestContext
from entrypoints.settings import Settings
from tests.e2e.admin_helpers import PanelAdmin, admin_settings, platform_admin
from tests.e2e.conftest import Service, start_service
from tests.e2e.identity_helpers import DEFAULT_IP, NO_BODY
from tests.e2e.test_orgs_and_roles import Actor, new_user

PANEL = "/api/admin/v1"
POOL = ("127.0.0.2", "127.0.0.3")
EGRESS_ACTIONS = ("admin.egress.released", "admin.egress.allocate_forced")

TakeAway = Callable[[Service, AdminPrincipal, uuid.UUID], Awaitable[None]]


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return admin_settings(backend, tmp_path, request, egress_pool=",".join(POOL), jobs_interval_seconds=0)


@pytest.fixture
async def service(settings: Settings, redis_namespace: str) -> AsyncIterator[Service]:
    async for svc in start_service(settings, redis_namespace):
        yield svc


async def an_admin(service: Service) -> PanelAdmin:
    return await platform_admin(service, ip=DEFAULT_IP)


async def post(service: Service, headers: dict[str, str], path: str) -> httpx.Response:
    return await service.client.post(f"{PANEL}{path}", headers={**headers, **NO_BODY})


async def ledger(service: Service) -> dict[str, tuple[str, str | None]]:
    async with service.container.engine.connect() as conn:
        rows = await conn.execute(select(egress_addresses))
        return {r.address: (r.state, None if r.user_id is None else str(r.user_id)) for r in rows}


async def egress_audit_events(service: Service) -> list[str]:
    async with service.container.engine.connect() as conn:
        rows = await conn.execute(
            select(audit_events.c.action).where(audit_events.c.action.in_(EGRESS_ACTIONS))
        )
        return [row.action for row in rows]


@pytest.fixture
async def holders(service: Service) -> tuple[PanelAdmin, Actor, Actor]:
    """An administrator who stays one; a paying user holding one of the pool's two addresses
    (given by the plan change); a paying user without one yet, whose allocation an administrator
    could force (their plan set behind the ledger's back, so nothing allocated it)."""
    root = await an_admin(service)
    holder = await new_user(service, "holder")
    r = await service.client.put(
        f"{PANEL}/users/{holder.user_id}/plan", json={"plan": "pro"}, headers=root.headers
    )
    assert r.status_code == 200, r.text
    waiting = await new_user(service, "waiting")
    async with service.container.engine.begin() as conn:
        await conn.execute(update(users).where(users.c.id == uuid.UUID(waiting.user_id)).values(plan="pro"))
    return root, holder, waiting


async def assert_nothing_changed(service: Service, holder: Actor, waiting: Actor, address: str) -> None:
    rows = await ledger(service)
    assert rows[address] == ("allocated", holder.user_id)
    assert sorted(state for state, _ in rows.values()) == ["allocated", "available"]
    bindings = service.container.egress.bindings
    assert await bindings.live_address(uuid.UUID(holder.user_id)) == address
    assert await bindings.live_address(uuid.UUID(waiting.user_id)) is None
    assert await egress_audit_events(service) == []


async def demote(service: Service, by: AdminPrincipal, user_id: uuid.UUID) -> None:
    await service.container.admin.demote(by, user_id, RequestContext())


async def pause(service: Service, by: AdminPrincipal, user_id: uuid.UUID) -> None:
    await service.container.admin_panel.pause_user(by, user_id, RequestContext())


def held_address(rows: dict[str, tuple[str, str | None]], holder: Actor) -> str:
    (address,) = [a for a, (state, user) in rows.items() if state == "allocated" and user == holder.user_id]
    return address


@pytest.mark.parametrize("take_away", [demote, pause], ids=["demoted", "paused"])
async def test_an_administrator_who_lost_the_role_mid_request_neither_releases_nor_forces(
    service: Service,
    holders: tuple[PanelAdmin, Actor, Actor],
    monkeypatch: pytest.MonkeyPatch,
    take_away: TakeAway,
) -> None:
    root, holder, waiting = holders
    address = held_address(await ledger(service), holder)
    root_principal = await service.container.admin.authenticate(root.token)
    authenticate = service.container.admin.authenticate
    doomed: set[str] = set()

    async def role_taken_away_right_after_authentication(token: str) -> AdminPrincipal:
        principal = await authenticate(token)
        if token in doomed:  # another administrator acts between the check and the action
            doomed.discard(token)
            await take_away(service, root_principal, principal.user_id)
        return principal

    monkeypatch.setattr(service.container.admin, "authenticate", role_taken_away_right_after_authentication)
    for path in (f"/egress/addresses/{address}/release", f"/users/{waiting.user_id}/egress/allocate"):
        admin = await an_admin(service)
        doomed.add(admin.token)
        r = await post(service, admin.headers, path)
        assert r.status_code == 403 and r.json()["code"] == "not_an_admin", r.text
        await assert_nothing_changed(service, holder, waiting, address)
        # From now on their session is refused before any action.
        r = await post(service, admin.headers, path)
        assert r.status_code == 401 and r.json()["code"] == "invalid_admin_session", r.text
        await assert_nothing_changed(service, holder, waiting, address)


async def test_a_user_session_never_opens_the_egress_admin_routes(
    service: Service, holders: tuple[PanelAdmin, Actor, Actor]
) -> None:
    root, holder, waiting = holders
    address = held_address(await ledger(service), holder)
    # A user's own session, and the user session of an account that is also an administrator.
    admin_as_user = await new_user(service, "admin-as-user")
    await platform_admin(service, admin_as_user.email, ip=DEFAULT_IP)
    for user in (holder, waiting, admin_as_user):
        for path in (f"/egress/addresses/{address}/release", f"/users/{waiting.user_id}/egress/allocate"):
            r = await post(service, user.headers, path)
            assert r.status_code == 401 and r.json()["code"] == "invalid_admin_session", r.text
    await assert_nothing_changed(service, holder, waiting, address)
    # The routes do work for an administrator: what was refused above was the session.
    r = await post(service, root.headers, f"/users/{waiting.user_id}/egress/allocate")
    assert r.status_code == 200 and r.json()["user_id"] == waiting.user_id, r.text
