"""Organisations, members, invitations, roles, groups, permission checks, the org audit trail and
org disabling, end to end through the HTTP app on both backends (PostgreSQL as the unprivileged
service role, so row-level security is live)."""

import asyncio
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

import httpx
import jwt
import pytest
from sqlalchemy import select

from adapters.storage.tables import audit_events
from application.errors import Forbidden
from application.identity import RequestContext
from application.use_cases.org_members import LastAdministrator
from domain.orgs import OrgRole
from domain.permissions import (
    CATALOG,
    SYSTEM_ROLE_IDS,
    SYSTEM_ROLE_NAMES,
    SYSTEM_ROLE_PERMISSIONS,
    SystemRole,
)
from entrypoints.settings import Settings
from tests.e2e.admin_helpers import LOOPBACK, PanelAdmin, platform_admin
from tests.e2e.conftest import FRONTEND, Service
from tests.e2e.identity_helpers import (
    FAST_ARGON2,
    NO_BODY,
    PASSWORD,
    assert_invalid_token,
    bearer,
    browser,
    login,
    me,
    refresh,
    refresh_token_of,
    register_verified,
    sent_mail,
    service_with,
    unique_email,
)

ALL_PERMISSIONS = sorted(str(p) for p in CATALOG)
ADMIN_ROLE = str(SYSTEM_ROLE_IDS[SystemRole.ADMINISTRATOR])
VIEWER_ROLE = str(SYSTEM_ROLE_IDS[SystemRole.VIEWER])
TRADER_ROLE = str(SYSTEM_ROLE_IDS[SystemRole.TRADER])
RISK_ROLE = str(SYSTEM_ROLE_IDS[SystemRole.RISK_MANAGER])


@pytest.fixture
async def service(service_settings: Settings, redis_namespace: str) -> AsyncIterator[Service]:
    """The shared service fixture with argon2 at OWASP's floor: these tests register many users."""
    async with service_with(service_settings, redis_namespace, **FAST_ARGON2) as svc:
        yield svc


# -- helpers (also used by the cross-tenant matrix) ------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """A logged-in user and their current session's tokens."""

    email: str
    user_id: str
    access: str
    refresh: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access)

    @property
    def org_id(self) -> str:
        return str(claims(self.access)["org"])


def claims(access_token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(access_token, options={"verify_signature": False})
    return decoded


async def new_user(service: Service, prefix: str = "user") -> Actor:
    """Registered, verified and logged in (into their personal org)."""
    email = await register_verified(service, unique_email(prefix))
    session = await login(service.client, email)
    return Actor(email, str(claims(session.access)["sub"]), session.access, session.refresh)


async def switch(service: Service, actor: Actor, org_id: str) -> Actor:
    r = await service.client.post("/api/v1/auth/switch-org", json={"org_id": org_id}, headers=actor.headers)
    assert r.status_code == 200, r.text
    return replace(actor, access=r.json()["access_token"], refresh=refresh_token_of(r))


async def create_org(service: Service, actor: Actor, name: str = "Desk") -> tuple[str, Actor]:
    """A new org of `actor`'s, and `actor` switched into it."""
    r = await service.client.post("/api/v1/orgs", json={"name": name}, headers=actor.headers)
    assert r.status_code == 201, r.text
    org_id = str(r.json()["id"])
    return org_id, await switch(service, actor, org_id)


def invitation_token(service: Service, to: str) -> str:
    pattern = re.compile(rf"{re.escape(FRONTEND)}/accept-invitation\?token=([A-Za-z0-9_.-]+)")
    found = [m.group(1) for msg in sent_mail(service, to) if (m := pattern.search(msg.body))]
    assert found, f"no invitation mail to {to}"
    return found[-1]


async def invite(
    service: Service,
    admin: Actor,
    email: str,
    org_role: str = "member",
    role_ids: Iterable[str] = (),
    group_ids: Iterable[str] = (),
) -> str:
    """Invites `email` into the admin's current org; answers the mailed token."""
    r = await service.client.post(
        f"/api/v1/orgs/{admin.org_id}/invitations",
        json={"email": email, "org_role": org_role, "role_ids": list(role_ids), "group_ids": list(group_ids)},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    return invitation_token(service, email)


async def join(
    service: Service,
    admin: Actor,
    member: Actor,
    org_role: str = "member",
    role_ids: Iterable[str] = (),
    group_ids: Iterable[str] = (),
) -> Actor:
    """`member` invited into the admin's current org, accepted, and switched into it."""
    token = await invite(service, admin, member.email, org_role, role_ids, group_ids)
    r = await service.client.post("/api/v1/invitations/accept", json={"token": token}, headers=member.headers)
    assert r.status_code == 200, r.text
    return await switch(service, member, admin.org_id)


async def check(service: Service, actor: Actor, permissions: list[str]) -> dict[str, bool]:
    r = await service.client.post(
        "/api/v1/authz/check", json={"permissions": permissions}, headers=actor.headers
    )
    assert r.status_code == 200, r.text
    results: dict[str, bool] = r.json()["results"]
    return results


async def allowed(service: Service, actor: Actor, permission: str) -> bool:
    r = await service.client.post(
        "/api/v1/authz/check", json={"permission": permission}, headers=actor.headers
    )
    assert r.status_code == 200, r.text
    return bool(r.json()["allowed"])


async def create_role(service: Service, admin: Actor, name: str, permissions: list[str]) -> str:
    r = await service.client.post(
        f"/api/v1/orgs/{admin.org_id}/roles",
        json={"name": name, "permissions": permissions},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def create_group(service: Service, admin: Actor, name: str) -> str:
    r = await service.client.post(
        f"/api/v1/orgs/{admin.org_id}/groups", json={"name": name}, headers=admin.headers
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def put(service: Service, actor: Actor, path: str) -> httpx.Response:
    return await service.client.put(path, headers={**actor.headers, **NO_BODY})


async def delete(service: Service, actor: Actor, path: str) -> httpx.Response:
    return await service.client.delete(path, headers=actor.headers)


async def audit_details(service: Service, action: str) -> list[dict[str, Any]]:
    """The audit trail is not org-scoped by RLS, so the service role reads it directly."""
    async with service.container.engine.connect() as conn:
        rows = await conn.execute(select(audit_events).where(audit_events.c.action == action))
        return [dict(row._mapping) for row in rows]


async def make_platform_admin(service: Service, actor: Actor, ip: str = LOOPBACK) -> PanelAdmin:
    """`actor`'s account promoted to platform administrator and logged into the panel from `ip`."""
    return await platform_admin(service, actor.email, ip)


async def admin_post(service: Service, path: str, actor: Actor | PanelAdmin) -> httpx.Response:
    """A bodiless POST to the admin panel (`path` below /api/admin/v1), from where it is visible,
    with the actor's credentials (only a panel admin's session cookie opens it)."""
    async with browser(service, ip=LOOPBACK) as panel:
        return await panel.post(f"/api/admin/v1{path}", headers={**actor.headers, **NO_BODY})


# -- organisations ---------------------------------------------------------------------------------


async def test_creating_an_org_makes_the_creator_an_administrator_holding_the_administrator_role(
    service: Service,
) -> None:
    alice = await new_user(service, "alice")
    personal = alice.org_id
    org_id, alice = await create_org(service, alice, "Alpha Desk")

    r = await service.client.get("/api/v1/orgs", headers=alice.headers)
    assert r.status_code == 200, r.text
    mine = {o["org"]["id"]: o for o in r.json()["orgs"]}
    assert set(mine) == {personal, org_id}
    assert mine[org_id]["role"] == "administrator" and mine[org_id]["org"]["name"] == "Alpha Desk"

    r = await service.client.get(f"/api/v1/orgs/{org_id}/members", headers=alice.headers)
    assert [(m["email"], m["org_role"]) for m in r.json()["members"]] == [(alice.email, "administrator")]

    r = await service.client.get("/api/v1/me/permissions", headers=alice.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["org_id"] == org_id
    assert [p["permission"] for p in body["permissions"]] == ALL_PERMISSIONS
    assert all(
        [(s["role_id"], s["group_id"]) for s in p["sources"]] == [(ADMIN_ROLE, None)]
        for p in body["permissions"]
    )
    created = [d for d in await audit_details(service, "org.created") if str(d["org_id"]) == org_id]
    assert len(created) == 1 and str(created[0]["actor_user_id"]) == alice.user_id


async def test_org_settings_are_read_and_changed_with_before_and_after_in_the_audit(service: Service) -> None:
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice, "Before Name")
    r = await service.client.get(f"/api/v1/orgs/{org_id}", headers=alice.headers)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "id": org_id,
        "name": "Before Name",
        "personal": False,
        "status": "active",
        "require_2fa": False,
    }
    r = await service.client.patch(
        f"/api/v1/orgs/{org_id}", json={"name": "After Name", "require_2fa": True}, headers=alice.headers
    )
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["require_2fa"]) == ("After Name", True)
    r = await service.client.get(f"/api/v1/orgs/{org_id}", headers=alice.headers)
    assert (r.json()["name"], r.json()["require_2fa"]) == ("After Name", True)

    [event] = [d for d in await audit_details(service, "org.updated") if str(d["org_id"]) == org_id]
    assert str(event["actor_user_id"]) == alice.user_id and event["target_id"] == org_id
    assert event["details"]["before"] == {"name": "Before Name", "require_2fa": False}
    assert event["details"]["after"] == {"name": "After Name", "require_2fa": True}

    # A plain member may read the org but not change its settings. (2FA off again so that bob,
    # who has none, may switch in: see test_an_org_requiring_2fa_admits_no_session_without_it.)
    r = await service.client.patch(
        f"/api/v1/orgs/{org_id}", json={"require_2fa": False}, headers=alice.headers
    )
    assert r.status_code == 200, r.text
    bob = await join(service, alice, await new_user(service, "bob"), role_ids=[TRADER_ROLE])
    assert (await service.client.get(f"/api/v1/orgs/{org_id}", headers=bob.headers)).status_code == 200
    r = await service.client.patch(f"/api/v1/orgs/{org_id}", json={"name": "Hijacked"}, headers=bob.headers)
    assert r.status_code == 403, r.text


async def test_switching_org_moves_the_token_the_profile_and_the_refresh_session(service: Service) -> None:
    alice = await new_user(service, "alice")
    personal = alice.org_id
    r = await service.client.post("/api/v1/orgs", json={"name": "Second"}, headers=alice.headers)
    org_id = str(r.json()["id"])

    moved = await switch(service, alice, org_id)
    assert moved.org_id == org_id and claims(moved.access)["sid"] == claims(alice.access)["sid"]
    r = await me(service.client, moved.access)
    assert r.status_code == 200 and r.json()["current_org"]["id"] == org_id, r.text

    [event] = [d for d in await audit_details(service, "org.switched") if str(d["org_id"]) == org_id]
    assert str(event["actor_user_id"]) == alice.user_id
    assert event["details"]["before"] == {"org_id": personal}
    assert event["details"]["after"] == {"org_id": org_id}

    # Someone else's org, or no org at all, looks the same: 404.
    bob = await new_user(service, "bob")
    for other in (bob.org_id, "00000000-0000-4000-8000-000000000000"):
        r = await service.client.post(
            "/api/v1/auth/switch-org", json={"org_id": other}, headers=moved.headers
        )
        assert r.status_code == 404, r.text
    r = await me(service.client, moved.access)
    assert r.json()["current_org"]["id"] == org_id

    # The cookie from before the switch is dead. A tab that raced the switch is refused without
    # ending the session...
    r = await refresh(service.client, alice.refresh)
    assert r.status_code == 401 and r.json()["code"] == "invalid_refresh_token", r.text
    # ...and the new cookie refreshes, in the new org.
    r = await refresh(service.client, moved.refresh)
    assert r.status_code == 200, r.text
    assert claims(r.json()["access_token"])["org"] == org_id


# -- invitations and members -----------------------------------------------------------------------


async def test_an_accepted_invitation_grants_its_org_role_roles_and_groups_and_works_once(
    service: Service,
) -> None:
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice)
    role_id = await create_role(service, alice, "Report Writers", ["reports:create", "reports:update"])
    group_id = await create_group(service, alice, "Risk Desk")
    r = await service.client.put(
        f"/api/v1/orgs/{org_id}/groups/{group_id}/roles/{RISK_ROLE}", headers={**alice.headers, **NO_BODY}
    )
    assert r.status_code == 204, r.text

    bob = await new_user(service, "bob")
    token = await invite(
        service, alice, bob.email, "administrator", role_ids=[role_id, TRADER_ROLE], group_ids=[group_id]
    )
    assert token.startswith(f"{org_id}.")
    r = await service.client.post("/api/v1/invitations/accept", json={"token": token}, headers=bob.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["user_id"], r.json()["org_role"]) == (bob.user_id, "administrator")

    members = (await service.client.get(f"/api/v1/orgs/{org_id}/members", headers=alice.headers)).json()
    assert {m["email"]: m["org_role"] for m in members["members"]} == {
        alice.email: "administrator",
        bob.email: "administrator",
    }
    group = (
        await service.client.get(f"/api/v1/orgs/{org_id}/groups/{group_id}", headers=alice.headers)
    ).json()
    assert group["member_ids"] == [bob.user_id]

    bob_in = await switch(service, bob, org_id)
    held = await check(
        service, bob_in, ["reports:update", "orders:create", "risk_limits:update", "billing:read"]
    )
    # An administrator holds the Administrator role with the org role: every permission.
    assert held == {
        "reports:update": True,
        "orders:create": True,
        "risk_limits:update": True,
        "billing:read": True,
    }

    # Single use: the same token again, by anyone, is refused.
    carol = await new_user(service, "carol")
    for user in (bob, carol):
        r = await service.client.post(
            "/api/v1/invitations/accept", json={"token": token}, headers=user.headers
        )
        assert r.status_code == 400 and r.json()["code"] == "invalid_or_expired_token", r.text
    r = await service.client.post(
        "/api/v1/invitations/accept", json={"token": f"{org_id}.forged-secret"}, headers=carol.headers
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_or_expired_token", r.text
    joined = [d for d in await audit_details(service, "member.joined") if str(d["org_id"]) == org_id]
    assert [str(d["actor_user_id"]) for d in joined] == [bob.user_id]


async def test_an_invitation_accepted_by_another_user_is_refused_and_stays_usable(service: Service) -> None:
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice)
    bob_email = unique_email("bob")
    token = await invite(service, alice, bob_email)
    mallory = await new_user(service, "mallory")
    r = await service.client.post(
        "/api/v1/invitations/accept", json={"token": token}, headers=mallory.headers
    )
    assert r.status_code == 403 and r.json()["code"] == "invitation_email_mismatch", r.text
    r = await service.client.post("/api/v1/auth/switch-org", json={"org_id": org_id}, headers=mallory.headers)
    assert r.status_code == 404, r.text

    await register_verified(service, bob_email)
    session = await login(service.client, bob_email)
    r = await service.client.post(
        "/api/v1/invitations/accept", json={"token": token}, headers=bearer(session.access)
    )
    assert r.status_code == 200, r.text


async def test_org_role_changes_and_the_last_administrator_cannot_be_demoted_removed_or_leave(
    service: Service,
) -> None:
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice)
    # bob holds every permission (through a custom role) but is not (yet) an org administrator.
    everything = await create_role(service, alice, "Everything", ALL_PERMISSIONS)
    bob = await join(service, alice, await new_user(service, "bob"), role_ids=[everything])
    base = f"/api/v1/orgs/{org_id}/members"

    def refused(r: httpx.Response) -> None:
        assert r.status_code == 409 and r.json()["code"] == "last_administrator", r.text

    refused(
        await service.client.patch(
            f"{base}/{alice.user_id}", json={"org_role": "member"}, headers=alice.headers
        )
    )
    refused(await delete(service, alice, f"{base}/{alice.user_id}"))  # leaving
    # Without the administrator org role, permissions alone do not change org roles.
    r = await service.client.patch(
        f"{base}/{alice.user_id}", json={"org_role": "member"}, headers=bob.headers
    )
    assert r.status_code == 403 and r.json()["code"] == "org_admin_required", r.text

    r = await service.client.patch(
        f"{base}/{bob.user_id}", json={"org_role": "administrator"}, headers=alice.headers
    )
    assert r.status_code == 200 and r.json()["org_role"] == "administrator", r.text
    # With two administrators alice may step down; then bob is the last one.
    r = await service.client.patch(
        f"{base}/{alice.user_id}", json={"org_role": "member"}, headers=alice.headers
    )
    assert r.status_code == 200, r.text
    r = await service.client.patch(
        f"{base}/{bob.user_id}", json={"org_role": "member"}, headers=alice.headers
    )
    assert r.status_code == 403, r.text  # alice is no longer an org administrator
    refused(
        await service.client.patch(f"{base}/{bob.user_id}", json={"org_role": "member"}, headers=bob.headers)
    )
    refused(await delete(service, bob, f"{base}/{bob.user_id}"))
    members = (await service.client.get(base, headers=bob.headers)).json()["members"]
    assert {m["email"]: m["org_role"] for m in members} == {alice.email: "member", bob.email: "administrator"}
    # Stepping down took the Administrator role with it: alice keeps no admin-area permission.
    r = await service.client.get(base, headers=alice.headers)
    assert r.status_code == 403, r.text

    [change] = [
        d
        for d in await audit_details(service, "member.org_role_changed")
        if str(d["org_id"]) == org_id and d["target_id"] == alice.user_id
    ]
    assert change["details"]["before"] == {"org_role": "administrator"}
    assert change["details"]["after"] == {"org_role": "member"}


async def test_a_removed_member_is_locked_out_on_their_very_next_request(service: Service) -> None:
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice)
    bob = await join(service, alice, await new_user(service, "bob"), role_ids=[TRADER_ROLE])
    assert await allowed(service, bob, "orders:create")

    r = await delete(service, alice, f"/api/v1/orgs/{org_id}/members/{bob.user_id}")
    assert r.status_code == 204, r.text
    assert_invalid_token(
        await service.client.post(
            "/api/v1/authz/check", json={"permission": "orders:create"}, headers=bob.headers
        )
    )
    assert (await refresh(service.client, bob.refresh)).status_code == 401
    members = (await service.client.get(f"/api/v1/orgs/{org_id}/members", headers=alice.headers)).json()
    assert [m["email"] for m in members["members"]] == [alice.email]
    # A member may leave on their own; removing someone else needs administrator rights.
    carol = await join(service, alice, await new_user(service, "carol"), role_ids=[TRADER_ROLE])
    dave = await join(service, alice, await new_user(service, "dave"), role_ids=[TRADER_ROLE])
    r = await delete(service, carol, f"/api/v1/orgs/{org_id}/members/{dave.user_id}")
    assert r.status_code == 403, r.text
    r = await delete(service, carol, f"/api/v1/orgs/{org_id}/members/{carol.user_id}")
    assert r.status_code == 204, r.text
    assert_invalid_token(await me(service.client, carol.access))
    assert (await me(service.client, dave.access)).status_code == 200


# -- roles -----------------------------------------------------------------------------------------


async def test_roles_list_the_seven_system_roles_and_custom_ones_which_alone_can_be_changed(
    service: Service,
) -> None:
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice)
    base = f"/api/v1/orgs/{org_id}/roles"

    role_id = await create_role(service, alice, "Auditors", ["audit_log:read", "reports:read"])
    listed = (await service.client.get(base, headers=alice.headers)).json()["roles"]
    system = {r["id"]: r for r in listed if r["system"]}
    assert {r["id"] for r in system.values()} == {str(i) for i in SYSTEM_ROLE_IDS.values()}
    for role, role_uuid in SYSTEM_ROLE_IDS.items():
        entry = system[str(role_uuid)]
        assert entry["name"] == SYSTEM_ROLE_NAMES[role]
        assert entry["permissions"] == sorted(str(p) for p in SYSTEM_ROLE_PERMISSIONS[role])
    [custom] = [r for r in listed if not r["system"]]
    assert (custom["id"], custom["name"], custom["permissions"]) == (
        role_id,
        "Auditors",
        ["audit_log:read", "reports:read"],
    )

    r = await service.client.post(
        base, json={"name": "Bad", "permissions": ["orders:launch"]}, headers=alice.headers
    )
    assert r.status_code == 400 and r.json()["code"] == "unknown_permission", r.text
    r = await service.client.post(
        base, json={"name": "Bad", "permissions": ["nonsense"]}, headers=alice.headers
    )
    assert r.status_code == 400, r.text
    r = await service.client.patch(
        f"{base}/{role_id}", json={"permissions": ["orders:launch"]}, headers=alice.headers
    )
    assert r.status_code == 400, r.text
    r = await service.client.post(base, json={"name": "viewer", "permissions": []}, headers=alice.headers)
    assert r.status_code == 409, r.text

    r = await service.client.patch(
        f"{base}/{role_id}",
        json={"name": "Auditors+", "permissions": ["audit_log:read", "billing:read"]},
        headers=alice.headers,
    )
    assert r.status_code == 200 and r.json()["permissions"] == ["audit_log:read", "billing:read"], r.text
    [updated] = [d for d in await audit_details(service, "role.updated") if d["target_id"] == role_id]
    assert updated["details"]["before"] == {
        "name": "Auditors",
        "permissions": ["audit_log:read", "reports:read"],
    }
    assert updated["details"]["after"] == {
        "name": "Auditors+",
        "permissions": ["audit_log:read", "billing:read"],
    }

    for role_uuid in SYSTEM_ROLE_IDS.values():
        r = await service.client.patch(
            f"{base}/{role_uuid}", json={"name": "Mine now"}, headers=alice.headers
        )
        assert r.status_code == 403 and r.json()["code"] == "system_role_immutable", r.text
        r = await delete(service, alice, f"{base}/{role_uuid}")
        assert r.status_code == 403 and r.json()["code"] == "system_role_immutable", r.text

    # Direct assignment: PUT grants at once, DELETE takes away at once.
    bob = await join(service, alice, await new_user(service, "bob"), role_ids=[VIEWER_ROLE])
    assign = f"/api/v1/orgs/{org_id}/members/{bob.user_id}/roles/{role_id}"
    assert not await allowed(service, bob, "billing:read")
    assert (await put(service, alice, assign)).status_code == 204
    assert await allowed(service, bob, "billing:read")
    assert (await delete(service, alice, assign)).status_code == 204
    assert not await allowed(service, bob, "billing:read")
    assert (await delete(service, alice, assign)).status_code == 404

    # Deleting a custom role takes it from its holders at once.
    assert (await put(service, alice, assign)).status_code == 204
    assert (await delete(service, alice, f"{base}/{role_id}")).status_code == 204
    assert not await allowed(service, bob, "billing:read")
    assert (await delete(service, alice, f"{base}/{role_id}")).status_code == 404
    listed = (await service.client.get(base, headers=alice.headers)).json()["roles"]
    assert [r for r in listed if not r["system"]] == []


async def test_a_viewer_is_refused_every_write_as_read_only(service: Service) -> None:
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice)
    group_id = await create_group(service, alice, "Desk")
    viewer = await join(service, alice, await new_user(service, "viewer"), role_ids=[VIEWER_ROLE])
    writes = [
        ("POST", f"/api/v1/orgs/{org_id}/groups", {"name": "Viewers' own"}),
        ("POST", f"/api/v1/orgs/{org_id}/roles", {"name": "Escalate", "permissions": ["orders:create"]}),
        ("PATCH", f"/api/v1/orgs/{org_id}/groups/{group_id}", {"name": "Renamed"}),
        ("PUT", f"/api/v1/orgs/{org_id}/members/{viewer.user_id}/roles/{ADMIN_ROLE}", None),
        ("PUT", f"/api/v1/orgs/{org_id}/groups/{group_id}/members/{viewer.user_id}", None),
    ]
    for method, path, body in writes:
        headers = viewer.headers if body is not None else {**viewer.headers, **NO_BODY}
        r = await service.client.request(method, path, json=body, headers=headers)
        # require_write answers before the permission guard: the refusal names the read-only role.
        assert r.status_code == 403 and r.json()["code"] == "read_only", (method, path, r.text)
    assert (
        await service.client.get(f"/api/v1/orgs/{org_id}/roles", headers=viewer.headers)
    ).status_code == 200
    assert not await allowed(service, viewer, "roles:update")


# -- groups ----------------------------------------------------------------------------------------


async def test_groups_are_created_renamed_given_members_and_roles_and_deleted(service: Service) -> None:
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice)
    bob = await join(service, alice, await new_user(service, "bob"))
    base = f"/api/v1/orgs/{org_id}/groups"
    group_id = await create_group(service, alice, "Traders")
    r = await service.client.post(base, json={"name": "traders"}, headers=alice.headers)
    assert r.status_code == 409, r.text

    r = await service.client.patch(
        f"{base}/{group_id}", json={"name": "Floor", "description": "the floor"}, headers=alice.headers
    )
    assert r.status_code == 200 and r.json()["name"] == "Floor", r.text
    [updated] = [d for d in await audit_details(service, "group.updated") if d["target_id"] == group_id]
    assert updated["details"]["before"]["name"] == "Traders"
    assert updated["details"]["after"]["name"] == "Floor"

    assert (await put(service, alice, f"{base}/{group_id}/members/{bob.user_id}")).status_code == 204
    assert (await put(service, alice, f"{base}/{group_id}/roles/{TRADER_ROLE}")).status_code == 204
    # Only members of this org can join its groups.
    outsider = await new_user(service, "outsider")
    assert (await put(service, alice, f"{base}/{group_id}/members/{outsider.user_id}")).status_code == 404
    r = await service.client.get(f"{base}/{group_id}", headers=alice.headers)
    assert (r.json()["member_ids"], r.json()["role_ids"]) == ([bob.user_id], [TRADER_ROLE])
    listed = (await service.client.get(base, headers=alice.headers)).json()["groups"]
    assert [(g["id"], g["name"]) for g in listed] == [(group_id, "Floor")]
    assert await allowed(service, bob, "orders:create")

    assert (await delete(service, alice, f"{base}/{group_id}")).status_code == 204
    assert not await allowed(service, bob, "orders:create")
    assert (await service.client.get(f"{base}/{group_id}", headers=alice.headers)).status_code == 404
    [deleted] = [d for d in await audit_details(service, "group.deleted") if d["target_id"] == group_id]
    assert deleted["details"]["before"]["member_ids"] == [bob.user_id]
    assert deleted["details"]["before"]["role_ids"] == [TRADER_ROLE]


async def test_a_name_taken_in_any_case_folding_is_a_409_never_a_500(service: Service) -> None:
    """ "İ" lowers to "i̇" in Python and to "i" in PostgreSQL: a check folding case on one side
    only let a second "İnvestors" reach the unique constraint (a 500). The same name twice, and a
    rename onto a taken name, are 409 on both backends."""
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice)
    for kind, body in (("groups", {}), ("roles", {"permissions": ["orders:read"]})):
        base = f"/api/v1/orgs/{org_id}/{kind}"
        first = await service.client.post(base, json={"name": "İnvestors", **body}, headers=alice.headers)
        assert first.status_code == 201, first.text
        again = await service.client.post(base, json={"name": "İnvestors", **body}, headers=alice.headers)
        assert again.status_code == 409, again.text
        assert again.json()["code"] == f"{kind[:-1]}_name_taken"
        other = await service.client.post(base, json={"name": "Other", **body}, headers=alice.headers)
        assert other.status_code == 201, other.text
        renamed = await service.client.patch(
            f"{base}/{other.json()['id']}", json={"name": "İnvestors"}, headers=alice.headers
        )
        assert renamed.status_code == 409, renamed.text
        listed = (await service.client.get(base, headers=alice.headers)).json()[kind]
        assert sorted(x["name"] for x in listed if x["name"] in ("İnvestors", "Other")) == [
            "Other",
            "İnvestors",
        ]


async def test_my_permissions_name_each_source_direct_or_through_a_group(service: Service) -> None:
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice)
    group_id = await create_group(service, alice, "Risk")
    assert (
        await put(service, alice, f"/api/v1/orgs/{org_id}/groups/{group_id}/roles/{RISK_ROLE}")
    ).status_code == 204
    bob = await join(
        service, alice, await new_user(service, "bob"), role_ids=[VIEWER_ROLE], group_ids=[group_id]
    )

    r = await service.client.get("/api/v1/me/permissions", headers=bob.headers)
    assert r.status_code == 200, r.text
    sources = {
        p["permission"]: sorted((s["role_name"], s["group_id"], s["group_name"]) for s in p["sources"])
        for p in r.json()["permissions"]
    }
    expected = SYSTEM_ROLE_PERMISSIONS[SystemRole.VIEWER] | SYSTEM_ROLE_PERMISSIONS[SystemRole.RISK_MANAGER]
    assert set(sources) == {str(p) for p in expected}
    assert sources["orders:read"] == [("Risk Manager", group_id, "Risk"), ("Viewer", None, None)]
    assert sources["risk_limits:update"] == [("Risk Manager", group_id, "Risk")]


# -- permission checks -----------------------------------------------------------------------------


async def test_authz_check_answers_single_and_batch_and_rejects_malformed_requests(service: Service) -> None:
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice)
    trader = await join(service, alice, await new_user(service, "trader"), role_ids=[TRADER_ROLE])
    r = await service.client.post(
        "/api/v1/authz/check", json={"permission": "orders:create"}, headers=trader.headers
    )
    assert r.status_code == 200 and r.json() == {"allowed": True}, r.text
    r = await service.client.post(
        "/api/v1/authz/check", json={"permission": "risk_limits:update"}, headers=trader.headers
    )
    assert r.json() == {"allowed": False}
    # Unknown or malformed names are simply not held.
    assert not await allowed(service, trader, "orders:launch")
    assert not await allowed(service, trader, "orders")

    r = await service.client.post(
        "/api/v1/authz/check", json={"permissions": ["orders:create", "orders:read"]}, headers=trader.headers
    )
    assert r.json() == {"allowed": True, "results": {"orders:create": True, "orders:read": True}}
    r = await service.client.post(
        "/api/v1/authz/check", json={"permissions": ["orders:create", "billing:read"]}, headers=trader.headers
    )
    assert r.json() == {"allowed": False, "results": {"orders:create": True, "billing:read": False}}

    for body in (
        {},
        {"permission": "orders:read", "permissions": ["orders:read"]},
        {"permissions": []},
        {"permissions": ["orders:read"] * 101},
    ):
        r = await service.client.post("/api/v1/authz/check", json=body, headers=trader.headers)
        assert r.status_code == 400, (body, r.text)
    r = await service.client.post("/api/v1/authz/check", json={"permission": "orders:read"})
    assert r.status_code == 401, r.text
    assert org_id == trader.org_id


async def test_each_system_role_alone_grants_exactly_its_row_of_the_permission_matrix(
    service: Service,
) -> None:
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice)
    member = await join(service, alice, await new_user(service, "member"))
    assert await check(service, member, ALL_PERMISSIONS) == dict.fromkeys(ALL_PERMISSIONS, False)

    held: str | None = None
    for role, role_uuid in SYSTEM_ROLE_IDS.items():
        # Swap the member's only role; the next check must already see the new one.
        assert (
            await put(service, alice, f"/api/v1/orgs/{org_id}/members/{member.user_id}/roles/{role_uuid}")
        ).status_code == 204
        if held is not None:
            r = await delete(service, alice, f"/api/v1/orgs/{org_id}/members/{member.user_id}/roles/{held}")
            assert r.status_code == 204, r.text
        held = str(role_uuid)
        expected = {p: p in names_of(role) for p in ALL_PERMISSIONS}
        assert await check(service, member, ALL_PERMISSIONS) == expected, SYSTEM_ROLE_NAMES[role]
    assert len(ALL_PERMISSIONS) == 70


def names_of(role: SystemRole) -> set[str]:
    return {str(p) for p in SYSTEM_ROLE_PERMISSIONS[role]}


async def test_a_permission_held_only_through_a_group_ends_on_the_next_check_when_the_group_link_goes(
    service: Service,
) -> None:
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice)
    role_id = await create_role(service, alice, "Kill switch", ["risk_limits:execute"])
    group_id = await create_group(service, alice, "Risk")
    base = f"/api/v1/orgs/{org_id}/groups/{group_id}"
    assert (await put(service, alice, f"{base}/roles/{role_id}")).status_code == 204
    bob = await join(
        service, alice, await new_user(service, "bob"), role_ids=[VIEWER_ROLE], group_ids=[group_id]
    )

    # Union: the Viewer's reads directly, the kill switch only through the group.
    assert await check(service, bob, ["risk_limits:execute", "orders:read", "orders:create"]) == {
        "risk_limits:execute": True,
        "orders:read": True,
        "orders:create": False,
    }
    # Removing the user from the group: the very next check (same token, warm cache) says no.
    assert (await delete(service, alice, f"{base}/members/{bob.user_id}")).status_code == 204
    assert not await allowed(service, bob, "risk_limits:execute")
    assert await allowed(service, bob, "orders:read")

    # Back in the group, then the role leaves the group: the next check says no again.
    assert (await put(service, alice, f"{base}/members/{bob.user_id}")).status_code == 204
    assert await allowed(service, bob, "risk_limits:execute")
    assert (await delete(service, alice, f"{base}/roles/{role_id}")).status_code == 204
    assert not await allowed(service, bob, "risk_limits:execute")

    # Changing a custom role's permissions also lands at once for its group holders.
    assert (await put(service, alice, f"{base}/roles/{role_id}")).status_code == 204
    assert await allowed(service, bob, "risk_limits:execute")
    r = await service.client.patch(
        f"/api/v1/orgs/{org_id}/roles/{role_id}",
        json={"permissions": ["reports:create"]},
        headers=alice.headers,
    )
    assert r.status_code == 200, r.text
    assert await check(service, bob, ["risk_limits:execute", "reports:create"]) == {
        "risk_limits:execute": False,
        "reports:create": True,
    }


# -- org audit -------------------------------------------------------------------------------------


async def test_org_audit_needs_audit_log_read_filters_and_pages_newest_first(service: Service) -> None:
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice)
    bob = await join(service, alice, await new_user(service, "bob"), role_ids=[TRADER_ROLE])
    for name in ("One", "Two", "Three"):
        await create_group(service, alice, name)
    url = f"/api/v1/orgs/{org_id}/audit"

    r = await service.client.get(url, headers=bob.headers)
    assert r.status_code == 403 and r.json()["code"] == "permission_denied", r.text

    everything = (await service.client.get(url, headers=alice.headers)).json()["entries"]
    ids = [e["id"] for e in everything]
    assert ids == sorted(ids, reverse=True) and len(ids) >= 7
    actions = [e["action"] for e in everything]
    assert actions[:3] == ["group.created"] * 3
    assert {"org.created", "org.switched", "member.invited", "member.joined"} <= set(actions)
    # Registrations, logins and the personal orgs' creation belong to other orgs: never shown here.
    assert set(actions) == {"org.created", "org.switched", "member.invited", "member.joined", "group.created"}
    assert sum(a == "org.created" for a in actions) == 1

    pages: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (await service.client.get(url, params=params, headers=alice.headers)).json()
        assert len(body["entries"]) <= 2
        pages.extend(e["id"] for e in body["entries"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == ids

    r = await service.client.get(url, params={"action": "group.created"}, headers=alice.headers)
    assert [e["details"]["after"]["name"] for e in r.json()["entries"]] == ["Three", "Two", "One"]
    r = await service.client.get(url, params={"actor": bob.user_id}, headers=alice.headers)
    assert {e["action"] for e in r.json()["entries"]} == {"member.joined", "org.switched"}
    assert all(e["actor_user_id"] == bob.user_id for e in r.json()["entries"])
    r = await service.client.get(
        url, params={"target_type": "user", "target_id": bob.user_id}, headers=alice.headers
    )
    assert [e["action"] for e in r.json()["entries"]] == ["member.joined"]
    newest = everything[0]["occurred_at"]
    r = await service.client.get(url, params={"since": newest}, headers=alice.headers)
    assert r.json()["entries"] and all(e["occurred_at"] >= newest for e in r.json()["entries"])
    r = await service.client.get(url, params={"until": everything[-1]["occurred_at"]}, headers=alice.headers)
    assert r.json()["entries"] == []
    r = await service.client.get(url, params={"cursor": "not-a-cursor"}, headers=alice.headers)
    assert r.status_code == 400, r.text

    # A Risk Manager holds audit_log:read without being an org administrator.
    assert (
        await put(service, alice, f"/api/v1/orgs/{org_id}/members/{bob.user_id}/roles/{RISK_ROLE}")
    ).status_code == 204
    assert (await service.client.get(url, headers=bob.headers)).status_code == 200


# -- disabling -------------------------------------------------------------------------------------


async def test_disabling_an_org_ends_member_sessions_on_the_next_request_and_enabling_does_not_revive_them(
    service: Service,
) -> None:
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice)
    bob = await join(service, alice, await new_user(service, "bob"), role_ids=[TRADER_ROLE])
    assert await allowed(service, bob, "orders:create")

    # Only a platform administrator's panel session may disable: a user's bearer token never opens
    # the panel, not even the org's own administrator's.
    r = await admin_post(service, f"/orgs/{org_id}/disable", alice)
    assert r.status_code == 401 and r.json()["code"] == "invalid_admin_session", r.text
    assert await allowed(service, bob, "orders:create")

    root = await make_platform_admin(service, await new_user(service, "root"))
    r = await admin_post(service, f"/orgs/{org_id}/disable", root)
    assert r.status_code == 200 and r.json()["status"] == "disabled", r.text
    for member in (bob, alice):
        assert_invalid_token(
            await service.client.post(
                "/api/v1/authz/check", json={"permission": "orders:read"}, headers=member.headers
            )
        )
        assert (await refresh(service.client, member.refresh)).status_code == 401
    # Nobody switches into a disabled org.
    fresh = await login(service.client, bob.email)
    r = await service.client.post(
        "/api/v1/auth/switch-org", json={"org_id": org_id}, headers=bearer(fresh.access)
    )
    assert r.status_code == 403, r.text

    r = await admin_post(service, f"/orgs/{org_id}/enable", root)
    assert r.status_code == 200 and r.json()["status"] == "active", r.text
    assert_invalid_token(await me(service.client, bob.access))
    assert (await refresh(service.client, bob.refresh)).status_code == 401
    [event] = [d for d in await audit_details(service, "org.disabled") if str(d["org_id"]) == org_id]
    assert event["details"]["before"] == {"status": "active"} and event["details"]["sessions_revoked"] == 2


async def test_two_administrators_demoting_each_other_at_once_leave_one_administrator(
    service: Service,
) -> None:
    from domain.permissions import SYSTEM_ROLE_IDS, SystemRole

    admin_role = str(SYSTEM_ROLE_IDS[SystemRole.ADMINISTRATOR])
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice)
    bob = await join(service, alice, await new_user(service, "bob"), "administrator", [admin_role])

    async def demote(actor: Actor, target: Actor) -> str:
        # Straight to the use case, both at once: the guards' own reads would only space them out.
        principal = await service.container.identity.authenticate(actor.access)
        try:
            await service.container.authz.change_member_role(
                principal, UUID(org_id), UUID(target.user_id), OrgRole.MEMBER, RequestContext()
            )
        except (LastAdministrator, Forbidden):
            return "refused"
        return "demoted"

    outcomes = await asyncio.gather(demote(alice, bob), demote(bob, alice))
    # The org row is locked before either reads its rights: exactly one demotion wins, and the
    # other finds its actor no longer an administrator (or, the other way round, the last one).
    assert sorted(outcomes) == ["demoted", "refused"], outcomes
    winner = alice if outcomes[0] == "demoted" else bob
    r = await service.client.get(f"/api/v1/orgs/{org_id}/members", headers=winner.headers)
    assert r.status_code == 200, r.text
    assert [m["org_role"] for m in r.json()["members"]].count("administrator") == 1


async def my_permissions(service: Service, actor: Actor) -> set[str]:
    r = await service.client.get("/api/v1/me/permissions", headers=actor.headers)
    assert r.status_code == 200, r.text
    return {p["permission"] for p in r.json()["permissions"]}


async def test_taking_rights_away_is_guarded_like_granting_them(service: Service) -> None:
    """The outside review's scenario 1: a member who may manage roles could strip the administrator
    of the Administrator role (directly or from a group) and cut down roles beyond their own."""
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice)
    base = f"/api/v1/orgs/{org_id}"
    manager = await create_role(
        service,
        alice,
        "Role Admins",
        ["roles:read", "roles:create", "roles:update", "roles:delete", "groups:read", "groups:update"],
    )
    bob = await join(service, alice, await new_user(service, "bob"), role_ids=[manager])
    carol = await join(service, alice, await new_user(service, "carol"), role_ids=[TRADER_ROLE])
    desk = await create_role(service, alice, "Desk", ["orders:read", "orders:execute"])
    group_id = await create_group(service, alice, "Admins")
    assert (await put(service, alice, f"{base}/groups/{group_id}/roles/{ADMIN_ROLE}")).status_code == 204
    assert (await put(service, alice, f"{base}/groups/{group_id}/roles/{desk}")).status_code == 204

    def refused(r: httpx.Response, code: str) -> None:
        assert r.status_code == 403 and r.json()["code"] == code, r.text

    refused(
        await delete(service, bob, f"{base}/members/{alice.user_id}/roles/{ADMIN_ROLE}"), "org_admin_required"
    )
    refused(await delete(service, bob, f"{base}/groups/{group_id}/roles/{ADMIN_ROLE}"), "org_admin_required")
    refused(await delete(service, bob, f"{base}/groups/{group_id}/roles/{desk}"), "grant_exceeds_own")
    refused(
        await delete(service, bob, f"{base}/members/{carol.user_id}/roles/{TRADER_ROLE}"), "grant_exceeds_own"
    )
    refused(
        await service.client.patch(f"{base}/roles/{desk}", json={"name": "Renamed"}, headers=bob.headers),
        "grant_exceeds_own",
    )
    refused(
        await service.client.patch(f"{base}/roles/{desk}", json={"permissions": []}, headers=bob.headers),
        "grant_exceeds_own",
    )
    refused(await delete(service, bob, f"{base}/roles/{desk}"), "grant_exceeds_own")

    # The administrator keeps every permission and can still manage the org.
    assert await my_permissions(service, alice) == set(ALL_PERMISSIONS)
    r = await service.client.get(f"{base}/members", headers=alice.headers)
    assert r.status_code == 200, r.text
    assert {m["email"]: m["org_role"] for m in r.json()["members"]}[alice.email] == "administrator"
    [kept] = [
        role
        for role in (await service.client.get(f"{base}/roles", headers=alice.headers)).json()["roles"]
        if role["id"] == desk
    ]
    assert (kept["name"], kept["permissions"]) == ("Desk", ["orders:execute", "orders:read"])

    # Those allowed still take links away, and it is audited.
    assert (
        await delete(service, alice, f"{base}/members/{carol.user_id}/roles/{TRADER_ROLE}")
    ).status_code == 204
    assert (await delete(service, alice, f"{base}/groups/{group_id}/roles/{desk}")).status_code == 204
    assert (await delete(service, alice, f"{base}/members/{carol.user_id}")).status_code == 204
    for action in ("member.role_removed", "group.role_removed", "member.removed"):
        assert [d for d in await audit_details(service, action) if str(d["org_id"]) == org_id], action


async def test_the_last_administrator_cannot_drop_the_administrator_role_any_way(service: Service) -> None:
    """Scenario 2: the sole administrator removing the Administrator role from themself is the same
    demotion as changing their org role, and is refused the same way."""
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice)
    base = f"/api/v1/orgs/{org_id}/members/{alice.user_id}"
    for r in (
        await delete(service, alice, f"{base}/roles/{ADMIN_ROLE}"),
        await service.client.patch(base, json={"org_role": "member"}, headers=alice.headers),
        await delete(service, alice, base),
    ):
        assert r.status_code == 409 and r.json()["code"] == "last_administrator", r.text
    assert await my_permissions(service, alice) == set(ALL_PERMISSIONS)

    # With a second administrator, dropping the role is a demotion: the org role goes with it.
    bob = await join(service, alice, await new_user(service, "bob"), "administrator")
    assert (await delete(service, alice, f"{base}/roles/{ADMIN_ROLE}")).status_code == 204
    r = await service.client.get(f"/api/v1/orgs/{org_id}/members", headers=bob.headers)
    assert {m["email"]: m["org_role"] for m in r.json()["members"]}[alice.email] == "member"
    [change] = [
        d
        for d in await audit_details(service, "member.org_role_changed")
        if str(d["org_id"]) == org_id and d["target_id"] == alice.user_id
    ]
    assert change["details"]["after"] == {"org_role": "member"}
    # And giving the role back is a promotion, for administrators only.
    assert (
        await put(service, bob, f"/api/v1/orgs/{org_id}/members/{alice.user_id}/roles/{ADMIN_ROLE}")
    ).status_code == 204
    r = await service.client.get(f"/api/v1/orgs/{org_id}/members", headers=bob.headers)
    assert {m["email"]: m["org_role"] for m in r.json()["members"]}[alice.email] == "administrator"


async def test_nobody_grants_more_than_they_hold(service: Service) -> None:
    """One admin-area permission is no ladder: roles, role links, group links and invitations may
    only carry permissions the granter holds, and only administrators invite administrators."""
    from domain.permissions import SYSTEM_ROLE_IDS, SystemRole

    admin_role = str(SYSTEM_ROLE_IDS[SystemRole.ADMINISTRATOR])
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice)
    manager = await create_role(
        service,
        alice,
        "People Manager",
        [
            "members:read",
            "members:create",
            "roles:read",
            "roles:create",
            "roles:update",
            "groups:read",
            "groups:update",
            "orders:read",
        ],
    )
    group_id = await create_group(service, alice, "Desk")
    r = await service.client.put(
        f"/api/v1/orgs/{org_id}/groups/{group_id}/roles/{admin_role}", headers=alice.headers
    )
    assert r.status_code == 204, r.text
    bob = await join(service, alice, await new_user(service, "bob"), "member", [manager])
    base = f"/api/v1/orgs/{org_id}"

    def exceeds(r: httpx.Response) -> None:
        assert r.status_code == 403 and r.json()["code"] == "grant_exceeds_own", r.text

    def admins_only(r: httpx.Response) -> None:
        assert r.status_code == 403 and r.json()["code"] == "org_admin_required", r.text

    # Himself the Administrator role, directly or through a group that holds it.
    admins_only(
        await service.client.put(f"{base}/members/{bob.user_id}/roles/{admin_role}", headers=bob.headers)
    )
    admins_only(
        await service.client.put(f"{base}/groups/{group_id}/members/{bob.user_id}", headers=bob.headers)
    )
    # A custom role wider than his own, new or by editing the one he holds.
    exceeds(
        await service.client.post(
            f"{base}/roles", json={"name": "Ladder", "permissions": ["orders:create"]}, headers=bob.headers
        )
    )
    exceeds(
        await service.client.patch(
            f"{base}/roles/{manager}", json={"permissions": ["orders:execute"]}, headers=bob.headers
        )
    )
    # An accomplice invited with the Administrator role, or as an org administrator.
    admins_only(
        await service.client.post(
            f"{base}/invitations",
            json={"email": "mallory@example.com", "role_ids": [admin_role]},
            headers=bob.headers,
        )
    )
    r = await service.client.post(
        f"{base}/invitations",
        json={"email": "mallory@example.com", "org_role": "administrator"},
        headers=bob.headers,
    )
    assert r.status_code == 403 and r.json()["code"] == "org_admin_required", r.text
    assert (await check(service, bob, ["orders:execute", "members:delete"])) == {
        "orders:execute": False,
        "members:delete": False,
    }
    # Within his own permissions he can still do his job.
    r = await service.client.post(
        f"{base}/roles", json={"name": "Readers", "permissions": ["orders:read"]}, headers=bob.headers
    )
    assert r.status_code == 201, r.text


async def test_an_org_requiring_2fa_admits_no_session_without_it(service: Service) -> None:
    alice = await new_user(service, "alice")
    personal = alice.org_id
    org_id, alice = await create_org(service, alice, "Strict Desk")
    bob = await join(service, alice, await new_user(service, "bob"))
    r = await service.client.patch(
        f"/api/v1/orgs/{org_id}", json={"require_2fa": True}, headers=alice.headers
    )
    assert r.status_code == 200 and r.json()["require_2fa"] is True, r.text

    def refused(r: httpx.Response) -> None:
        assert r.status_code == 403 and r.json()["code"] == "two_factor_required", r.text

    # Neither of them has 2FA: no refresh into the org, no switch into it...
    refused(await refresh(service.client, bob.refresh))
    back = await service.client.post(
        "/api/v1/auth/switch-org", json={"org_id": personal}, headers=alice.headers
    )
    assert back.status_code == 200, back.text
    refused(
        await service.client.post(
            "/api/v1/auth/switch-org", json={"org_id": org_id}, headers=bearer(back.json()["access_token"])
        )
    )
    # ...and a fresh login lands in an org that does not require it (where 2FA can be turned on).
    r = await service.client.post("/api/v1/auth/login", json={"email": bob.email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    assert claims(r.json()["access_token"])["org"] != org_id
