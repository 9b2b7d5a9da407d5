"""A pause across workers: two containers built from the same PostgreSQL + Redis settings and
namespace play two worker processes. An administrator pausing an account on one must stop the
other from accepting that account's still-valid access token within 100 ms."""

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from entrypoints.settings import Settings
from tests.e2e.admin_helpers import platform_admin
from tests.e2e.identity_helpers import NO_BODY, assert_invalid_token
from tests.integration.test_revocation_propagation import Worker, signed_in, worker

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

WORKER_IP = "203.0.113.9"  # the workers' clients' address (see `worker`)


@pytest.fixture
def shared_settings(tmp_path: Path, fresh_pg_url: str, redis_url: str) -> Settings:
    from tests.e2e.conftest import make_settings

    # One data dir: both workers load the same keyring, as processes of one deployment do.
    return make_settings(
        tmp_path,
        database_url=fresh_pg_url,
        redis_url=redis_url,
        argon2_memory_kib=19456,
        admin_allowed_networks=("203.0.113.0/24",),
    )


@pytest.fixture
async def two_workers(
    shared_settings: Settings, redis_namespace: str
) -> AsyncIterator[tuple[Worker, Worker]]:
    async with (
        worker(shared_settings, redis_namespace) as a,
        worker(dataclasses.replace(shared_settings), redis_namespace) as b,
    ):
        yield a, b


async def test_a_pause_on_one_worker_is_refused_by_another_within_100_ms(
    two_workers: tuple[Worker, Worker],
) -> None:
    a, b = two_workers
    assert await b.container.revocations.healthy()  # B learns by pub/sub, not from the database
    admin = await platform_admin(a, ip=WORKER_IP)
    session = await signed_in(a)
    user_id = session.body["user"]["id"]
    assert (await b.client.get("/api/v1/me", headers=session.headers)).status_code == 200

    r = await a.client.post(f"/api/admin/v1/users/{user_id}/pause", headers={**admin.headers, **NO_BODY})
    assert r.status_code == 200, r.text
    paused_at = time.perf_counter()
    while True:
        answer = await b.client.get("/api/v1/me", headers=session.headers)
        elapsed = time.perf_counter() - paused_at
        if answer.status_code != 200 or elapsed > 1.0:
            break
        # A served request may never yield to the event loop; a real worker waits on its socket.
        await asyncio.sleep(0.001)
    assert_invalid_token(answer)
    assert elapsed < 0.1, f"worker B accepted the paused account's token for {elapsed * 1000:.1f} ms"
    assert_invalid_token(await a.client.get("/api/v1/me", headers=session.headers))
