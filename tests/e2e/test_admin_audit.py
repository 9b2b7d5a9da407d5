"""The platform-wide audit trail for administrators (issue 18), on both backends: every org's
entries, filtered, newest first in keyset pages; the NDJSON export says the same; the chain check
passes on an intact log and names the first broken link after a row is tampered with."""

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.database import create_engine
from adapters.storage.tables import users
from entrypoints.settings import Settings
from tests.e2e.admin_helpers import (
    ADMIN_PASSWORD,
    AdminWorld,
    admin_cookie,
    admin_settings,
    start_world,
    with_admin,
)
from tests.e2e.identity_helpers import browser, register_verified
from tests.integration.test_audit_log import tamper

AUDIT = "/api/admin/v1/audit"


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return admin_settings(backend, tmp_path, request, admin_login_limit_per_account="100/900")


@pytest.fixture
async def world(settings: Settings, redis_namespace: str) -> AsyncIterator[AdminWorld]:
    async for world in start_world(settings, redis_namespace):
        yield world


@pytest.fixture
async def owner_engine(
    backend: str, world: AdminWorld, request: pytest.FixtureRequest
) -> AsyncIterator[AsyncEngine]:
    """The tables' owner (the service role cannot switch the append-only triggers off)."""
    if backend == "embedded":
        yield world.service.container.engine
        return
    engine = create_engine(request.getfixturevalue("fresh_pg_url"), pool_size=1)
    try:
        yield engine
    finally:
        await engine.dispose()


async def signed_in(world: AdminWorld) -> tuple[Any, str]:
    email, enrolment = await world.admin()
    r = await world.login(email, ADMIN_PASSWORD, world.code(enrolment))
    assert r.status_code == 200, r.text
    world.clock.advance(30)
    return enrolment, admin_cookie(r)


async def everything(world: AdminWorld, token: str, **filters: str) -> list[dict[str, Any]]:
    """Every matching entry, page by page (2 a page), checking the order as it goes."""
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {**filters, "limit": "2", **({"cursor": cursor} if cursor else {})}
        r = await world.client.get(AUDIT, params=params, headers=with_admin(token))
        assert r.status_code == 200, r.text
        page = r.json()
        entries += page["entries"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
    return entries


def content(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries without their chain link: the sealer adds it a moment after commit (PostgreSQL), so
    two reads a moment apart may differ in it and nothing else."""
    return [{k: v for k, v in e.items() if k not in ("prev_hash", "hash")} for e in entries]


async def org_of(world: AdminWorld, email: str) -> str:
    async with world.service.container.engine.connect() as conn:
        row = (await conn.execute(select(users.c.default_org_id).where(users.c.email == email))).one()
    return str(row.default_org_id)


async def test_filters_pages_and_the_export_agree(world: AdminWorld) -> None:
    admin, token = await signed_in(world)
    first = await register_verified(world.service)
    # Entries carry the audit writer's own (real) clock, not the pinned one.
    await asyncio.sleep(0.01)
    middle = datetime.now(UTC)
    await asyncio.sleep(0.01)
    async with browser(world.service, ip="198.51.100.9") as other_ip:
        second_email = "second-" + first
        r = await other_ip.post(
            "/api/v1/auth/register",
            json={"email": second_email, "password": "a long enough user password 42", "display_name": "Two"},
        )
        assert r.status_code in (201, 202), r.text
    await world.client.post(
        "/api/admin/v1/admins", json={"email": first}, headers={**with_admin(token), "user-agent": "ua/1"}
    )

    whole = await everything(world, token)
    assert {e["action"] for e in whole} >= {
        "admin.created",
        "admin.login.success",
        "admin.promoted",
        "user.registered",
    }

    first_org = await org_of(world, first)
    by_org = await everything(world, token, org=first_org)
    assert by_org and all(e["org_id"] == first_org for e in by_org)
    assert content([e for e in whole if e["org_id"] == first_org]) == content(by_org)

    by_actor = await everything(world, token, actor=str(admin.user_id))
    assert by_actor and all(e["actor_user_id"] == str(admin.user_id) for e in by_actor)
    assert {e["action"] for e in by_actor} >= {"admin.promoted", "admin.login.success"}

    by_prefix = await everything(world, token, action="admin.")
    assert by_prefix and all(e["action"].startswith("admin.") for e in by_prefix)
    assert not any(e["action"].startswith("user.") for e in by_prefix)
    # A prefix is literal: `_` and `%` are no wildcards.
    assert await everything(world, token, action="admin_") == []
    assert await everything(world, token, action="%") == []

    [promoted] = await everything(world, token, target_type="user", action="admin.promoted")
    assert promoted["user_agent"] == "ua/1" and promoted["details"]["after"]["admin"] == "pending"
    assert content(
        await everything(world, token, target_id=promoted["target_id"], action="admin.promoted")
    ) == (content([promoted]))

    from_other_ip = await everything(world, token, source_ip="198.51.100.9")
    assert from_other_ip and all(e["source_ip"] == "198.51.100.9" for e in from_other_ip)

    before = await everything(world, token, until=middle.isoformat())
    after = await everything(world, token, since=middle.isoformat())
    assert before and after and sorted(e["id"] for e in before + after) == sorted(e["id"] for e in whole)

    # The export: NDJSON, the same filters, the same entries in the same order (its own audit
    # entry is written before the first line, so the listing taken after it matches).
    for filters in ({}, {"action": "admin."}, {"org": first_org}):
        r = await world.client.get(f"{AUDIT}/export", params=filters, headers=with_admin(token))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.text.splitlines()]
        assert content(lines) == content(await everything(world, token, **filters))
    exported = await everything(world, token, action="admin.audit.exported")
    assert len(exported) == 3 and exported[0]["details"]["filters"] == {"org_id": first_org}


async def test_listed_entries_carry_their_chain_link_once_sealed(world: AdminWorld) -> None:
    _, token = await signed_in(world)
    await register_verified(world.service)
    whole: list[dict[str, Any]] = []
    for _ in range(100):  # each worker's sealer runs every second (SQLite seals inline)
        whole = await everything(world, token)
        if all(e["hash"] for e in whole):
            break
        await asyncio.sleep(0.05)
    assert whole and all(e["hash"] and e["prev_hash"] for e in whole), whole
    oldest_first = whole[::-1]
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(oldest_first))


async def test_bad_filters_are_refused(world: AdminWorld) -> None:
    _, token = await signed_in(world)
    for params in (
        {"org": "not-a-uuid"},
        {"actor": "42"},
        {"limit": "0"},
        {"limit": "201"},
        {"cursor": "abc"},
        {"cursor": "9" * 30},
        {"since": "yesterday"},
        {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        {"since": "2026-01-02T00:00:00"},
        {"action": "a" * 101},
        {"action": "admin.\x00"},
        {"source_ip": ""},
    ):
        for path in (AUDIT, f"{AUDIT}/export"):
            if path.endswith("export") and set(params) & {"limit", "cursor"}:
                continue
            r = await world.client.get(path, params=params, headers=with_admin(token))
            assert r.status_code == 400, (path, params, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
    world.client.cookies.clear()
    assert (await world.client.get(AUDIT)).status_code == 401
    assert (await world.client.get(f"{AUDIT}/export")).status_code == 401


async def test_verify_passes_an_intact_chain_and_names_the_first_broken_link(
    world: AdminWorld, owner_engine: AsyncEngine
) -> None:
    _, token = await signed_in(world)
    for _ in range(3):
        await register_verified(world.service)
    r = await world.client.post(f"{AUDIT}/verify", headers={**with_admin(token), "content-length": "0"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] is True and body["first_broken"] is None and body["checked"] >= 5

    await tamper(owner_engine, "UPDATE audit_events SET target_id = 'someone-else' WHERE id = 3")
    r = await world.client.post(f"{AUDIT}/verify", headers={**with_admin(token), "content-length": "0"})
    body = r.json()
    assert body["ok"] is False and body["checked"] == 3, body
    assert body["first_broken"]["id"] == 3 and "hash" in body["first_broken"]["reason"]
    [verified, _] = await everything(world, token, action="admin.audit.verified")
    assert verified["details"]["ok"] is False and verified["details"]["first_broken_id"] == 3
