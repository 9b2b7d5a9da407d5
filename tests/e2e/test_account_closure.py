"""Account closure (issue 18) through the HTTP app, on both backends: the admin's deletion token
rules (every bad token changes nothing), the closure pipeline resumed after a crash leaving no
trace of the address anywhere in the database, and the address free to register again."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import JSON, LargeBinary, String, select

from adapters.storage.database import create_engine
from adapters.storage.tables import account_closures, bridges, memberships, metadata, users
from application.account_closure import ClosurePipeline
from domain.account_closure import ClosureStep
from entrypoints.settings import Settings
from tests.bridge_simulator import ExpertAdvisor
from tests.e2e.identity_helpers import PASSWORD, audit_rows, browser, login, login_response, register_verified
from tests.e2e.test_admin_login import ADMIN_PASSWORD, AdminWorld, admin_settings, start_world
from tests.e2e.test_orgs_and_roles import invite, new_user

USERS = "/api/admin/v1/users"
UA = {"user-agent": "ClosureTest/1.0 (an agent string to erase)"}


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return admin_settings(backend, tmp_path, request, jobs_interval_seconds=0)


@pytest.fixture
def owner_url(backend: str, settings: Settings, request: pytest.FixtureRequest) -> str:
    """The tables' owner: row-level security must not hide a row from the scan."""
    if backend == "embedded":
        return settings.effective_database_url
    return str(request.getfixturevalue("fresh_pg_url"))


@pytest.fixture
async def world(settings: Settings, redis_namespace: str) -> AsyncIterator[AdminWorld]:
    async for w in start_world(settings, redis_namespace):
        yield w


async def admin_client(world: AdminWorld) -> tuple[httpx.AsyncClient, Any]:
    """A second browser with a fresh administrator logged in."""
    email, enrolment = await world.admin()
    transport = httpx.ASGITransport(app=world.client._transport.app, client=("203.0.113.9", 40000))  # type: ignore[attr-defined]
    client = httpx.AsyncClient(
        transport=transport, base_url=str(world.client.base_url), headers=dict(world.client.headers)
    )
    r = await world.login(email, ADMIN_PASSWORD, world.code(enrolment), client)
    assert r.status_code == 200, r.text
    return client, enrolment


async def user_row(world: AdminWorld, user_id: str) -> Any:
    async with world.service.container.engine.connect() as conn:
        return (await conn.execute(select(users).where(users.c.id == UUID(user_id)))).first()


async def user_id_of(world: AdminWorld, email: str) -> str:
    async with world.service.container.engine.connect() as conn:
        return str((await conn.execute(select(users.c.id).where(users.c.email == email))).scalar_one())


async def delete(client: httpx.AsyncClient, user_id: str, token: str | None) -> httpx.Response:
    body = {} if token is None else {"confirmation_token": token}
    return await client.request("DELETE", f"{USERS}/{user_id}", json=body)


async def deletion_token(client: httpx.AsyncClient, user_id: str) -> dict[str, Any]:
    r = await client.post(f"{USERS}/{user_id}/deletion-token", headers={"content-length": "0"})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_every_bad_deletion_token_is_refused_and_changes_nothing(world: AdminWorld) -> None:
    first, _ = await admin_client(world)
    second, _ = await admin_client(world)
    target_email = await register_verified(world.service)
    other_email = await register_verified(world.service)
    target, other = await user_id_of(world, target_email), await user_id_of(world, other_email)

    issued = await deletion_token(first, target)
    assert issued["summary"]["email"] == target_email  # shown to the administrator, not audited
    other_token = (await deletion_token(first, other))["confirmation_token"]
    token = issued["confirmation_token"]

    refusals = [
        await delete(first, target, None),  # missing
        await delete(first, target, token[:-2] + "xx"),  # wrong
        await delete(first, target, other_token),  # another target's
        await delete(second, target, token),  # another administrator's
    ]
    for r in refusals:
        assert r.status_code == 400, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "invalid_confirmation_token"
    assert (await user_row(world, target)).status == "active"
    assert (await login_response(world.client, target_email)).status_code == 200

    world.clock.advance(301)  # expired
    r = await delete(first, target, token)
    assert r.status_code == 400 and r.json()["code"] == "invalid_confirmation_token"
    assert (await user_row(world, target)).email == target_email

    fresh = (await deletion_token(first, target))["confirmation_token"]
    assert (await delete(first, target, fresh)).status_code == 204
    row = await user_row(world, target)
    assert row.status == "closed" and row.email != target_email
    r = await delete(first, target, fresh)  # reused
    assert r.status_code == 400 and r.json()["code"] == "invalid_confirmation_token"
    # The other target was not touched by any of it.
    assert (await user_row(world, other)).status == "active"
    await first.aclose()
    await second.aclose()


async def test_an_administrator_cannot_delete_themselves(world: AdminWorld) -> None:
    client, enrolment = await admin_client(world)
    r = await client.post(f"{USERS}/{enrolment.user_id}/deletion-token", headers={"content-length": "0"})
    assert r.status_code == 403 and r.json()["code"] == "self_action_forbidden"
    r = await delete(client, str(enrolment.user_id), "anything")
    assert r.status_code == 403 and r.json()["code"] == "self_action_forbidden"
    await client.aclose()


async def test_the_admin_deletion_is_audited_with_its_full_payload_and_no_address(world: AdminWorld) -> None:
    client, enrolment = await admin_client(world)
    email = await register_verified(world.service)
    target = await user_id_of(world, email)
    token = (await deletion_token(client, target))["confirmation_token"]
    r = await client.request("DELETE", f"{USERS}/{target}", json={"confirmation_token": token}, headers=UA)
    assert r.status_code == 204, r.text
    [entry] = await audit_rows(world.service, "admin.user_deleted")
    assert str(entry.actor_user_id) == str(enrolment.user_id) and entry.actor_kind == "admin"
    assert entry.target_type == "user" and entry.target_id == target
    assert entry.source_ip == "203.0.113.9" and entry.user_agent == UA["user-agent"]
    assert entry.occurred_at is not None
    details = entry.details
    assert details["before"]["status"] == "active" and details["before"]["orgs"]
    assert details["after"] == {"status": "closed", "closure": "requested"}
    assert details["admin_session"] and details["summary_digest"]
    assert email not in str(details)
    [closed] = await audit_rows(world.service, "account.closed")
    assert closed.target_id == target
    await client.aclose()


EA_IP = "198.51.100.77"  # the closing user's terminal, and nobody else's


async def scan_for(url: str, needle: str) -> list[str]:
    """Every text, JSON and binary column of every table that holds `needle`."""
    engine = create_engine(url, pool_size=1)
    found = []
    try:
        async with engine.connect() as conn:
            for table in metadata.sorted_tables:
                columns = [c for c in table.columns if isinstance(c.type, (String, JSON, LargeBinary))]
                if not columns:
                    continue
                for row in await conn.execute(select(*columns)):
                    for column, value in zip(columns, row, strict=True):
                        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                        if needle.lower() in text.lower():
                            found.append(f"{table.name}.{column.name}")
    finally:
        await engine.dispose()
    return found


async def test_closure_resumed_after_a_crash_leaves_nothing_and_frees_the_address(
    world: AdminWorld, owner_url: str
) -> None:
    service = world.service
    closing = await new_user(service, "closing")
    email = closing.email
    user_id = await user_id_of(world, email)
    # A bridge of theirs to stop, and an invitation to their address (in the invitation, and
    # audited as ids only) to erase.
    made = await service.client.post(
        f"/api/v1/orgs/{closing.org_id}/bridges", json={"name": "Their EA"}, headers=closing.headers
    )
    assert made.status_code == 201, made.text
    async with browser(service, ip=EA_IP) as terminal:
        terminal.headers.pop("origin")
        assert (await ExpertAdvisor(terminal, made.json()["key"]).start()).status_code == 200
    await invite(service, await new_user(service, "inviter"), email)
    await login(service.client, email)  # a second session, with an IP and user agent to erase
    me = await login(service.client, email)
    pipeline: ClosurePipeline = service.container.closures.close_own_account.pipeline

    async def crash(step: ClosureStep) -> None:
        if step is ClosureStep.BROKER_CREDENTIALS_DESTROYED:  # its work done, not yet recorded
            raise RuntimeError("injected crash")

    pipeline.after_step = crash
    r = await service.client.request(
        "DELETE", "/api/v1/me", json={"password": PASSWORD}, headers={**me.headers, **UA}
    )
    assert r.status_code == 204, r.text
    # Closed at once: the token is dead and nobody can log in, though the pipeline stopped.
    assert (await service.client.get("/api/v1/me", headers=me.headers)).status_code == 401
    assert (await login_response(service.client, email)).status_code != 200
    async with service.container.engine.connect() as conn:
        closure = (await conn.execute(select(account_closures))).one()
    assert closure.step_reached == ClosureStep.BRIDGES_STOPPED and closure.finished_at is None
    assert await scan_for(owner_url, email)  # not erased yet

    async def no_crash(_: ClosureStep) -> None:
        return None

    pipeline.after_step = no_crash
    assert await service.container.closures.resume() == 1
    assert await service.container.closures.resume() == 0  # nothing left to do

    assert await scan_for(owner_url, email) == []  # the audit log and the invitations included
    # The address their terminal called from stays only where the audit log keeps each request's.
    assert [c for c in await scan_for(owner_url, EA_IP) if not c.startswith("audit_events.")] == []
    owner = create_engine(owner_url, pool_size=1)  # past row-level security
    try:
        async with owner.connect() as conn:
            query = select(bridges.c.status).where(bridges.c.id == UUID(made.json()["bridge"]["id"]))
            stopped = (await conn.execute(query)).scalar_one()
    finally:
        await owner.dispose()
    assert stopped == "revoked"
    # Sessions forget their user agents; the append-only audit log keeps each request's context.
    assert [c for c in await scan_for(owner_url, UA["user-agent"]) if not c.startswith("audit_events.")] == []
    row = await user_row(world, user_id)
    assert row.status == "closed" and row.display_name == "" and "@" not in row.email

    again = await register_verified(service, email)
    assert await user_id_of(world, again) != user_id
    assert (await login_response(service.client, email)).status_code == 200


async def test_closing_needs_the_password_and_leaves_no_org_without_administrator(
    world: AdminWorld, owner_url: str
) -> None:
    service = world.service
    email = await register_verified(service)
    me = await login(service.client, email)
    r = await service.client.request("DELETE", "/api/v1/me", json={"password": "wrong"}, headers=me.headers)
    assert r.status_code == 401
    org = await service.client.post("/api/v1/orgs", json={"name": "Shared"}, headers=me.headers)
    assert org.status_code == 201, org.text
    org_id = org.json()["id"]
    # Another member joins: the closing user is its only administrator.
    member_id = UUID(await user_id_of(world, await register_verified(service)))
    engine = create_engine(owner_url, pool_size=1)  # the owner: past row-level security
    try:
        async with engine.begin() as conn:
            await conn.execute(
                memberships.insert().values(
                    org_id=UUID(org_id), user_id=member_id, role="member", created_at=world.clock.now()
                )
            )
    finally:
        await engine.dispose()
    r = await service.client.request("DELETE", "/api/v1/me", json={"password": PASSWORD}, headers=me.headers)
    assert r.status_code == 409 and r.json()["code"] == "org_handover_required"
    assert r.json()["orgs"] == [{"id": org_id, "name": "Shared"}]
    assert (await service.client.get("/api/v1/me", headers=me.headers)).status_code == 200


async def test_the_last_platform_administrator_cannot_close_their_account(world: AdminWorld) -> None:
    service = world.service
    email, _ = await world.admin()  # the only administrator
    me = await login(service.client, email)
    r = await service.client.request("DELETE", "/api/v1/me", json={"password": PASSWORD}, headers=me.headers)
    assert r.status_code == 409 and r.json()["code"] == "last_platform_admin", r.text
    assert (await service.client.get("/api/v1/me", headers=me.headers)).status_code == 200
