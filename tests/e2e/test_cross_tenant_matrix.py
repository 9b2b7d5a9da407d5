"""The cross-tenant matrix, generated from the app's own routes: every org-scoped endpoint, for every
method it serves, called by org A's administrator with org B's ids, answers 404/403 and changes
nothing. A route added later is in the matrix automatically; a path parameter the matrix cannot fill
fails the test until someone says which org B id it takes."""

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest
from litestar.routes import HTTPRoute
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.database import create_engine
from adapters.storage.tables import (
    bridges,
    broker_connections,
    broker_oauth_states,
    group_members,
    group_roles,
    groups,
    integration_secrets,
    invitations,
    member_roles,
    memberships,
    organisations,
    roles,
    sessions,
)
from adapters.storage.unit_of_work import SqlUnitOfWorkFactory
from domain.brokers import (
    BrokerConnection,
    ConnectedAccount,
    ConnectionKind,
    ConnectionStatus,
    CtraderScope,
    SealedCredential,
)
from domain.permissions import SYSTEM_ROLE_IDS, SystemRole
from entrypoints.app import create_litestar
from entrypoints.settings import Settings
from tests.e2e.admin_helpers import LOOPBACK as ADMIN_IP
from tests.e2e.conftest import Service
from tests.e2e.identity_helpers import FAST_ARGON2, NO_BODY, browser, service_with
from tests.e2e.test_orgs_and_roles import (
    Actor,
    allowed,
    create_group,
    create_role,
    invite,
    join,
    new_user,
    put,
)

# Every table that holds an org's data (org-scoped tables, memberships, the org row itself) and the
# sessions that a cross-tenant call could end.
SNAPSHOT_TABLES: tuple[Table, ...] = (
    organisations,
    memberships,
    roles,
    member_roles,
    groups,
    group_members,
    group_roles,
    invitations,
    sessions,
    broker_connections,
    integration_secrets,
    broker_oauth_states,
    bridges,
)
PATH_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
# What org-scoped routes serve today; the matrix may only grow.
KNOWN_ORG_SCOPED_CALLS = 24


@pytest.fixture
async def service(service_settings: Settings, redis_namespace: str) -> AsyncIterator[Service]:
    # cTrader on (no peer is called: starting a flow only builds the consent URL).
    async with service_with(
        service_settings, redis_namespace, ctrader_client_id="matrix", **FAST_ARGON2
    ) as svc:
        yield svc


@pytest.fixture
async def snapshot_engine(
    backend: str, service: Service, request: pytest.FixtureRequest
) -> AsyncIterator[AsyncEngine]:
    """Reads every org's rows. The PostgreSQL service role sees nothing without an org declared
    (row-level security), so there the snapshots are read as the superuser, same database."""
    if backend == "embedded":
        yield service.container.engine
        return
    engine = create_engine(str(request.getfixturevalue("fresh_pg_url")), pool_size=2)
    try:
        yield engine
    finally:
        await engine.dispose()


Snapshot = dict[str, list[dict[str, Any]]]


async def snapshot(engine: AsyncEngine) -> Snapshot:
    found: Snapshot = {}
    async with engine.connect() as conn:
        for table in SNAPSHOT_TABLES:
            rows = (await conn.execute(select(table))).mappings().all()
            found[table.name] = sorted((dict(row) for row in rows), key=repr)
    return found


@dataclass(frozen=True)
class Tenant:
    admin: Actor
    member: Actor
    org_id: str
    role_id: str
    group_id: str
    connection_id: str
    secret_id: str
    bridge_id: str

    def ids(self) -> dict[str, str]:
        """Values for each path parameter (and id-valued body field) of an org-scoped route."""
        return {
            "org_id": self.org_id,
            "user_id": self.admin.user_id,
            "role_id": self.role_id,
            "group_id": self.group_id,
            "connection_id": self.connection_id,
            "secret_id": self.secret_id,
            "bridge_id": self.bridge_id,
        }


async def seed_connection(service: Service, org_id: str, owner: str) -> str:
    """A sealed broker connection of the org, stored as the OAuth callback stores one."""
    connection_id = uuid.uuid4()
    async with SqlUnitOfWorkFactory(service.container.engine)() as uow:
        await uow.broker_connections.add(
            BrokerConnection(
                id=connection_id,
                org_id=uuid.UUID(org_id),
                kind=ConnectionKind.CTRADER,
                label="B's account",
                status=ConnectionStatus.ACTIVE,
                scope=CtraderScope.TRADING,
                accounts=(ConnectedAccount(40001, True, 7001, "Broker"),),
                created_by=uuid.UUID(owner),
                created_at=datetime.now(UTC),
                access_expires_at=datetime.now(UTC) + timedelta(days=30),
                last_refreshed_at=None,
                sealed=SealedCredential("bk-matrix", b"sealed"),
            )
        )
        await uow.commit()
    return str(connection_id)


async def tenant(service: Service, name: str) -> Tenant:
    """An org with its administrator, a member in a group that holds a custom role, and a pending
    invitation."""
    admin = await new_user(service, f"{name}-admin")
    org_id = admin.org_id  # the personal org: its creator is administrator with every permission
    role_id = await create_role(service, admin, f"{name} reporters", ["reports:create"])
    group_id = await create_group(service, admin, f"{name} desk")
    assert (
        await put(service, admin, f"/api/v1/orgs/{org_id}/groups/{group_id}/roles/{role_id}")
    ).status_code == 204
    member = await join(
        service,
        admin,
        await new_user(service, f"{name}-member"),
        role_ids=[str(SYSTEM_ROLE_IDS[SystemRole.TRADER])],
        group_ids=[group_id],
    )
    await invite(service, admin, f"{name}-pending-{uuid.uuid4().hex[:8]}@example.com", role_ids=[role_id])
    connection_id = await seed_connection(service, org_id, admin.user_id)
    r = await service.client.post(
        f"/api/v1/orgs/{org_id}/integration-secrets",
        json={"name": f"{name} vendor", "kind": "api_key", "value": "s3cret"},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    bridge = await service.client.post(
        f"/api/v1/orgs/{org_id}/bridges", json={"name": f"{name} EA"}, headers=admin.headers
    )
    assert bridge.status_code == 201, bridge.text
    return Tenant(
        admin, member, org_id, role_id, group_id, connection_id, r.json()["id"], bridge.json()["bridge"]["id"]
    )


@dataclass(frozen=True)
class Call:
    method: str
    template: str
    params: tuple[str, ...]
    body_type: Any  # the handler's JSON body type, or None

    def path(self, ids: dict[str, str]) -> str:
        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            assert name in ids, f"{self.method} {self.template}: which org-B id goes into {{{name}}}?"
            return ids[name]

        return PATH_PARAM.sub(fill, self.template)


def org_scoped_calls(service: Service) -> list[Call]:
    """Every (method, route) of the served app whose path names an org. OPTIONS is the CORS
    preflight, answered before any handler."""
    calls = []
    for route in create_litestar(service.container).routes:
        if not isinstance(route, HTTPRoute) or "{org_id" not in route.path:
            continue
        for handler in route.route_handlers:
            data = getattr(handler, "parsed_data_field", None)
            for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"}):
                calls.append(
                    Call(
                        method,
                        route.path,
                        tuple(PATH_PARAM.findall(route.path)),
                        data.annotation if data is not None else None,
                    )
                )
    return sorted(calls, key=lambda c: (c.template, c.method))


def plausible_body(body_type: Any, ids: dict[str, str]) -> dict[str, Any]:
    """A body the handler would accept, with every id-valued field pointing at org B."""
    by_name: dict[str, Any] = {
        "name": "Taken over by A",
        "description": "cross-tenant",
        "email": f"intruder-{uuid.uuid4().hex[:8]}@example.com",
        "org_role": "administrator",
        "permissions": ["orders:create", "billing:read"],
        "permission": "orders:create",
        "require_2fa": True,
        "role_ids": [ids["role_id"]],
        "group_ids": [ids["group_id"]],
        "org_id": ids["org_id"],
        "user_id": ids["user_id"],
        "connection_id": ids["connection_id"],
        "label": "Taken over by A",
        "kind": "api_key",
        "value": "planted",
    }
    body: dict[str, Any] = {}
    for field in msgspec.structs.fields(body_type):
        if field.name in by_name:
            body[field.name] = by_name[field.name]
        elif field.required:
            kind = str(field.type)
            body[field.name] = True if "bool" in kind else [] if "list" in kind else "x"
    return body


async def send(service: Service, actor: Actor, call: Call, ids: dict[str, str]) -> tuple[int, str]:
    path = call.path(ids)
    if path.startswith("/api/admin/"):
        # The admin panel is an unknown route outside its allowlist (loopback here): ask from
        # inside, so that the handler's own refusal is what the matrix sees.
        async with browser(service, ip=ADMIN_IP) as panel:
            return await send_with(panel, actor, call, path, ids)
    return await send_with(service.client, actor, call, path, ids)


async def send_with(
    client: httpx.AsyncClient, actor: Actor, call: Call, path: str, ids: dict[str, str]
) -> tuple[int, str]:
    if call.body_type is not None:
        r = await client.request(
            call.method, path, json=plausible_body(call.body_type, ids), headers=actor.headers
        )
    elif call.method == "GET":
        r = await client.get(path, headers=actor.headers)
    else:
        r = await client.request(call.method, path, headers={**actor.headers, **NO_BODY})
    return r.status_code, r.text


# Body fields that name objects, and the path parameter whose id they carry.
BODY_ID_FIELDS = {
    "role_ids": "role_id",
    "group_ids": "group_id",
    "user_id": "user_id",
    "connection_id": "connection_id",
}


def admin_only(route: str, answer: tuple[int, str]) -> bool:
    """An admin panel route refusing a user's token outright: it opens only to an admin session."""
    return (
        route.split(" ", 1)[1].startswith("/api/admin/")
        and answer[0] == 401
        and "invalid_admin_session" in answer[1]
    )


def object_ids_named(call: Call) -> list[str]:
    """The ids (as path parameter names) a call names besides the org, in its path or its body."""
    named = [p for p in call.params if p != "org_id"]
    if call.body_type is not None:
        for field in msgspec.structs.fields(call.body_type):
            if field.name in BODY_ID_FIELDS and BODY_ID_FIELDS[field.name] not in named:
                named.append(BODY_ID_FIELDS[field.name])
    return named


async def test_every_org_scoped_endpoint_refuses_org_b_ids_to_org_a_and_changes_nothing(
    service: Service, snapshot_engine: AsyncEngine
) -> None:
    a = await tenant(service, "a")
    b = await tenant(service, "b")
    alice = a.admin
    calls = org_scoped_calls(service)
    # Generated, not hand-listed: a new org-scoped route joins the matrix by itself.
    assert len(calls) >= KNOWN_ORG_SCOPED_CALLS, [f"{c.method} {c.template}" for c in calls]

    before = await snapshot(snapshot_engine)
    # The snapshot really holds org B's data, so "unchanged" means something.
    for table in (
        "roles",
        "member_roles",
        "groups",
        "group_members",
        "group_roles",
        "invitations",
        "broker_connections",
        "integration_secrets",
        "bridges",
    ):
        assert any(str(row["org_id"]) == b.org_id for row in before[table]), table

    # 1. Org B's path and ids, with org A's administrator's token.
    answered: dict[str, tuple[int, str]] = {}
    for call in calls:
        answered[f"{call.method} {call.template}"] = await send(service, alice, call, b.ids())
    leaks = {k: v for k, v in answered.items() if v[0] not in (403, 404) and not admin_only(k, v)}
    assert not leaks, leaks
    assert len(answered) == len(calls)

    # 2. Org A's own path (alice may do anything there), naming B's role, group or user.
    mixed = [(call, object_ids_named(call)) for call in calls]
    mixed = [(call, named) for call, named in mixed if named]
    assert len(mixed) >= 12, "routes naming a role, group or user besides the org went missing"
    for call, named in mixed:
        # Each of B's ids alone (the others A's own), then all of them at once.
        variants = [{**a.ids(), p: b.ids()[p]} for p in named] + [{**b.ids(), "org_id": a.org_id}]
        for ids in variants:
            status, text = await send(service, alice, call, ids)
            assert status == 404, (call.method, call.path(ids), ids, text)

    assert await snapshot(snapshot_engine) == before
    # Org B still works as before: its member keeps the permission its group gives.
    assert await allowed(service, b.member, "reports:create")
    assert await allowed(service, b.admin, "members:delete")
