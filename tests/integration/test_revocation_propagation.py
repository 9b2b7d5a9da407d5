"""Revocation across workers: two containers built from the same PostgreSQL + Redis settings and
namespace play two worker processes. A logout on one must stop the other from accepting the
access token within 100 ms (pub/sub into each worker's memory), and a worker whose revocation
store is down must fall back to the database rather than accept a revoked session."""

import asyncio
import dataclasses
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from entrypoints.app import create_asgi
from entrypoints.composition import build_container
from entrypoints.settings import Settings
from tests.e2e.conftest import FRONTEND, Service, make_settings
from tests.e2e.identity_helpers import (
    FAST_ARGON2,
    LoggedIn,
    assert_invalid_token,
    bearer,
    last_link,
    login,
    register,
    unique_email,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


class Worker(Service):
    """One worker process's container and a client of its ASGI app."""


@asynccontextmanager
async def worker(settings: Settings, namespace: str) -> AsyncIterator[Worker]:
    container = build_container(settings, redis_namespace=namespace)
    await container.start()
    try:
        transport = httpx.ASGITransport(app=create_asgi(container), client=("203.0.113.9", 50000))
        async with httpx.AsyncClient(
            transport=transport, base_url="https://bulwark.test", headers={"origin": FRONTEND}
        ) as client:
            yield Worker(container, client)
    finally:
        await container.stop()


@pytest.fixture
def shared_settings(tmp_path: Path, fresh_pg_url: str, redis_url: str) -> Settings:
    # One data dir: both workers load the same keyring, as processes of one deployment do.
    return make_settings(tmp_path, database_url=fresh_pg_url, redis_url=redis_url, **FAST_ARGON2)


@pytest.fixture
async def workers(shared_settings: Settings, redis_namespace: str) -> AsyncIterator[Callable[..., Any]]:
    async with AsyncExitStack() as stack:

        async def open_worker(settings: Settings = shared_settings) -> Worker:
            return await stack.enter_async_context(worker(settings, redis_namespace))

        yield open_worker


async def signed_in(w: Worker) -> LoggedIn:
    """Register, verify and log in through worker `w`."""
    email = unique_email()
    assert (await register(w.client, email)).status_code == 202
    token = last_link(w, email, "verify-email")
    assert (await w.client.post("/api/v1/auth/verify-email", json={"token": token})).status_code == 200
    return await login(w.client, email)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens once the probe is closed


async def test_logout_on_one_worker_is_refused_by_another_within_100_ms(
    workers: Callable[..., Any],
) -> None:
    a, b = await workers(), await workers()
    assert await b.container.revocations.healthy()  # B learns by pub/sub, not from the database
    session = await signed_in(a)
    assert (await b.client.get("/api/v1/me", headers=session.headers)).status_code == 200

    r = await a.client.post("/api/v1/auth/logout", headers=session.headers)
    assert r.status_code == 204, r.text
    revoked_at = time.perf_counter()
    while True:
        answer = await b.client.get("/api/v1/me", headers=session.headers)
        elapsed = time.perf_counter() - revoked_at
        if answer.status_code != 200 or elapsed > 1.0:
            break
        # A served request may never yield to the event loop (everything it needs is in memory);
        # a real worker waits on its socket between requests, which lets the subscriber run.
        await asyncio.sleep(0.001)
    assert_invalid_token(answer)
    assert elapsed < 0.1, f"worker B accepted the revoked token for {elapsed * 1000:.1f} ms"
    # And the worker that revoked refuses at once.
    assert_invalid_token(await a.client.get("/api/v1/me", headers=bearer(session.access)))


async def test_a_worker_without_redis_checks_the_database_and_refuses_revoked_sessions(
    workers: Callable[..., Any], shared_settings: Settings
) -> None:
    a = await workers()
    b = await workers(dataclasses.replace(shared_settings, redis_url=f"redis://127.0.0.1:{closed_port()}/0"))
    assert not await b.container.revocations.healthy()

    session = await signed_in(a)
    other = await login(a.client, session.body["user"]["email"])
    assert (await b.client.get("/api/v1/me", headers=session.headers)).status_code == 200
    assert (await b.client.get("/api/v1/me", headers=other.headers)).status_code == 200

    # B never hears of this revocation (no Redis): only the database can tell it.
    r = await a.client.post("/api/v1/auth/logout", headers=session.headers)
    assert r.status_code == 204, r.text
    assert_invalid_token(await b.client.get("/api/v1/me", headers=session.headers))
    # The fallback refuses what is revoked, not everything.
    assert (await b.client.get("/api/v1/me", headers=other.headers)).status_code == 200


async def test_a_worker_started_after_redis_lost_its_data_still_refuses_recent_revocations(
    workers: Callable[..., Any], redis_url: str, redis_namespace: str
) -> None:
    import redis.asyncio as aioredis

    a = await workers()
    session = await signed_in(a)
    assert (await a.client.post("/api/v1/auth/logout", headers=session.headers)).status_code == 204
    # Redis restarts without persistence: the revocation set is gone.
    client = aioredis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{redis_namespace}:rev:*")]
        assert keys
        await client.delete(*keys)
    finally:
        await client.aclose()

    b = await workers()  # loads Redis (empty) and the database's recent revocations
    assert await b.container.revocations.healthy()
    assert_invalid_token(await b.client.get("/api/v1/me", headers=session.headers))


async def test_a_revoked_bridge_key_is_refused_by_another_worker_within_100_ms(
    workers: Callable[..., Any],
) -> None:
    a, b = await workers(), await workers()
    session = await signed_in(a)
    org_id = jwt.decode(session.access, options={"verify_signature": False})["org"]
    created = await a.client.post(
        f"/api/v1/orgs/{org_id}/bridges", json={"name": "EA"}, headers=session.headers
    )
    assert created.status_code == 201, created.text
    key, bridge_id = created.json()["key"], created.json()["bridge"]["id"]
    probe = {"x-api-key": key, "content-length": "0"}
    assert (await b.client.post("/api/v1/authz/bridge", headers=probe)).status_code == 200  # cached on B
    assert await b.container.bridge_versions.healthy()

    r = await a.client.delete(
        f"/api/v1/orgs/{org_id}/bridges/{bridge_id}", headers={**session.headers, "content-length": "0"}
    )
    assert r.status_code == 204, r.text
    revoked_at = time.perf_counter()
    while True:
        answer = await b.client.post("/api/v1/authz/bridge", headers=probe)
        elapsed = time.perf_counter() - revoked_at
        if answer.status_code != 200 or elapsed > 1.0:
            break
        await asyncio.sleep(0.001)
    assert answer.status_code == 401, answer.text
    assert elapsed < 0.1, f"worker B accepted the revoked bridge key for {elapsed * 1000:.1f} ms"
