"""SIGTERM (what an orchestrator sends before it kills) lets `bulwark serve` finish the requests in
flight before it exits: a request held up inside PostgreSQL by a lock is still answered in full."""

import asyncio
import signal
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.fault_servers import (
    MailSink,
    PrivatePostgres,
    PrivateRedis,
    api_client,
    bearer,
    login,
    register_verified,
    start_bulwark,
)

pytestmark = pytest.mark.slow

HELD_SECONDS = 2.0


async def waiting_on_a_lock(conn: asyncpg.Connection, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("the request never reached the lock")


async def test_sigterm_drains_a_slow_request_in_flight_before_exiting(
    workdir: Path, fault_db: str, fault_pg: PrivatePostgres, fault_redis: PrivateRedis, sink: MailSink
) -> None:
    server = start_bulwark(workdir, fault_db, fault_redis.url, sink, request_timeout_seconds="10")
    try:
        server.wait_workers(2)
        address = f"drain-{uuid.uuid4().hex[:8]}@example.com"
        async with api_client(server) as client:
            await register_verified(client, sink, address)
            session = await login(client, address)

            holder = await asyncpg.connect(fault_pg.dsn(fault_db.rsplit("/", 1)[1]))
            try:
                transaction = holder.transaction()
                await transaction.start()
                # Anything reading the sessions table now waits: a request slow for a known reason.
                await holder.execute("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
                slow = asyncio.create_task(
                    client.get("/api/v1/me/sessions", headers=bearer(session.access_token))
                )
                await waiting_on_a_lock(holder)
                server.signal(signal.SIGTERM)
                await asyncio.sleep(HELD_SECONDS)
                assert not slow.done(), "the request ended before its lock was released"
                assert server.alive(), "the server exited with a request in flight"
                await transaction.commit()
            finally:
                await holder.close()
            answer = await slow
        assert answer.status_code == 200, answer.text
        assert answer.json()["sessions"], answer.text
        await asyncio.to_thread(server.process.wait, 20)
        assert server.process.returncode == 0, server.log()[-3000:]
    finally:
        server.stop()
