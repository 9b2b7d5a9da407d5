"""Every statement of a hot path runs on an index once the tables are production-shaped.

The database is seeded by bench/seed_large.py at a small factor (10,000 users, 50,000 sessions,
200,000 audit entries) and ANALYZEd, so the planner prices a sequential scan of a large table as
it would in production. The real app then serves /me, /authz/check, login, refresh, the org audit
search (plain and filtered), the session list and revocation, a bridge key lookup and a
housekeeping batch, while every
statement it sends is captured; each is replayed under EXPLAIN (ANALYZE) as the service's role
with its row-level security settings, and none may read a large table sequentially (nor read
an index in an order that makes it throw most of what it reads away)."""

import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy.engine import make_url

from adapters.storage.expired_rows import SqlExpiredRows
from entrypoints.composition import recently_revoked_sessions
from entrypoints.settings import Settings
from tests.conftest import APP_ROLE
from tests.e2e.conftest import Service, make_settings, start_service
from tests.e2e.identity_helpers import FAST_ARGON2, bearer, login, refresh_token_of, register_verified
from tests.integration.plan_capture import StatementLog, capture, explain, heavy_reads, wasteful_reads

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import seed_large

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(120)]

FACTOR = 0.01
LARGE_TABLES = frozenset(
    {
        "users",
        "organisations",
        "memberships",
        "member_roles",
        "roles",
        "sessions",
        "refresh_tokens",
        "one_time_tokens",
        "audit_events",
    }
)
# Rows a plan may read and throw away: half of seeded org 0's audit history at this factor, 2 % of
# the sessions. A page of a filtered audit search skips about 500 entries when one in ten matches.
REMOVED_LIMIT = 1_000
HOT_PHASES = (
    "login",
    "me",
    "authz check",
    "refresh",
    "org audit search",
    "session list",
    "session revoke",
    "revocation reload",
    "bridge key lookup",
    "housekeeping",
)
# A batch the size of 0.1 % of the seeded sessions, as 5,000 would be of production's 5 million
# (at 1 % PostgreSQL rightly reads a table this small whole rather than look 500 keys up).
BATCH = 50
# A batch may read this many rows of a table: a fifth of the seeded sessions (one-time tokens, 2,000
# here, are small enough to be read whole; at production size the same statement uses the index).
BATCH_READ_LIMIT = 10_000


def _owner_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
async def seeded(fresh_pg_url: str, app_pg_url: str) -> tuple[str, str]:
    """(owner dsn, service url) of a database seeded production-shaped and analysed."""
    owner = _owner_dsn(fresh_pg_url)
    await seed_large.seed(owner, FACTOR, log=lambda _line: None)
    return owner, app_pg_url


@pytest.fixture
async def service(
    seeded: tuple[str, str], tmp_path: Path, redis_url: str, redis_namespace: str, monkeypatch: Any
) -> AsyncIterator[tuple[Service, StatementLog]]:
    settings: Settings = make_settings(tmp_path, database_url=seeded[1], redis_url=redis_url, **FAST_ARGON2)
    log = StatementLog()
    async for svc in start_service(settings, redis_namespace):
        capture(svc.container.engine, log, monkeypatch)
        yield svc, log


async def test_no_hot_path_statement_scans_a_large_table(
    seeded: tuple[str, str], service: tuple[Service, StatementLog]
) -> None:
    svc, log = service
    client = svc.client
    email = await register_verified(svc)
    with log.phase("login"):
        session = await login(client, email)
    user_id = str(jwt.decode(session.access, options={"verify_signature": False})["sub"])
    hot_org = await seed_large.join_org_0(seeded[0], user_id)
    r = await client.post("/api/v1/auth/switch-org", json={"org_id": hot_org}, headers=session.headers)
    assert r.status_code == 200, r.text
    access, refresh_token = r.json()["access_token"], refresh_token_of(r)
    svc.container.identity.profile.deps.profiles.clear()  # the switch cached it: read it again
    with log.phase("me"):
        assert (await client.get("/api/v1/me", headers=bearer(access))).status_code == 200
    with log.phase("authz check"):
        r = await client.post(
            "/api/v1/authz/check", json={"permission": "orders:create"}, headers=bearer(access)
        )
        assert r.status_code == 200, r.text
    with log.phase("refresh"):
        r = await client.post("/api/v1/auth/refresh", headers={"cookie": f"bulwark_refresh={refresh_token}"})
        assert r.status_code == 200, r.text
        access = r.json()["access_token"]
    with log.phase("org audit search"):
        for query in (
            "",
            "?action=member.removed",
            "?action=mfa.failure&since=2026-01-01T00:00:00Z",
            f"?actor={user_id}",
            "?action=bridge.revoked",  # in none of the seeded entries: the org's whole history
        ):
            r = await client.get(f"/api/v1/orgs/{hot_org}/audit{query}", headers=bearer(access))
            assert r.status_code == 200, r.text
    with log.phase("session list"):
        r = await client.get("/api/v1/me/sessions", headers=bearer(access))
        assert r.status_code == 200, r.text
    with log.phase("bridge key lookup"):
        created = await client.post(
            f"/api/v1/orgs/{hot_org}/bridges", json={"name": "Desk EA"}, headers=bearer(access)
        )
        assert created.status_code == 201, created.text
        bare = httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))
        async with bare:
            r = await bare.post(
                "/api/v1/authz/bridge", headers={"x-api-key": created.json()["key"], "content-length": "0"}
            )
        assert r.status_code == 200, r.text
    other = await login(client, email)
    with log.phase("session revoke"):
        sessions = (await client.get("/api/v1/me/sessions", headers=bearer(access))).json()["sessions"]
        victim = next(s["id"] for s in sessions if not s["current"])
        r = await client.delete(f"/api/v1/me/sessions/{victim}", headers=bearer(access))
        assert r.status_code == 204, r.text
    with log.phase("revocation reload"):
        assert await recently_revoked_sessions(svc.container.engine, 900)()
    with log.phase("housekeeping"):
        expired = SqlExpiredRows(svc.container.engine)
        cutoff = datetime.now(UTC) - timedelta(days=30)
        assert await expired.purge_dead_sessions(cutoff, BATCH) == BATCH
        assert await expired.purge_spent_tokens(cutoff, BATCH) > 0
    assert other.access

    failures: list[str] = []
    for captured in log.of(*HOT_PHASES):
        plan = await explain(seeded[0], APP_ROLE, captured)
        wasted = wasteful_reads(plan, LARGE_TABLES, REMOVED_LIMIT)
        if captured.phase == "housekeeping":
            # Batch work: a LIMITed sequential scan that stops early is fine (most rows match
            # while there is a backlog); reading the whole table per batch is not.
            wasted = heavy_reads(plan, LARGE_TABLES, BATCH_READ_LIMIT)
        if wasted:
            failures.append(f"[{captured.phase}] {wasted}: {captured.sql}")
    assert not failures, "\n".join(failures)
    seen_phases = {captured.phase for captured in log.statements}
    # Each hot path really sent statements (a phase served wholly from a cache proves nothing).
    assert seen_phases >= {
        "login",
        "me",
        "authz check",
        "refresh",
        "org audit search",
        "session list",
        "revocation reload",
    }, seen_phases
