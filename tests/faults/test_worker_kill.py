"""A granian worker killed with SIGKILL (the OOM killer's way) in the middle of work: refreshes in
flight leave no session with two live successors and no session revoked by mistake, an account
closure stopped half-way resumes with `bulwark jobs run` and ends complete, and granian replaces
the dead worker while the other keeps serving."""

import asyncio
import hashlib
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.fault_servers import (
    FRONTEND,
    PASSWORD,
    BulwarkServer,
    MailSink,
    PrivatePostgres,
    PrivateRedis,
    api_client,
    bearer,
    inode_of_tcp_connection,
    login,
    refresh_cookie_of,
    register_verified,
    socket_inodes,
    start_bulwark,
    wait_for,
    with_cookie,
)
from tests.faults.load import fresh_connections

pytestmark = pytest.mark.slow

TABS = 8


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


async def pg(fault_pg: PrivatePostgres, fault_db: str) -> asyncpg.Connection:
    return await asyncpg.connect(fault_pg.dsn(fault_db.rsplit("/", 1)[1]))


def start(workdir: Path, fault_db: str, fault_redis: PrivateRedis, sink: MailSink) -> BulwarkServer:
    return start_bulwark(
        workdir,
        fault_db,
        fault_redis.url,
        sink,
        login_limit_per_account="100000/60",
        login_limit_per_ip="100000/60",
        register_limit_per_ip="100000/60",
        jobs_interval_seconds="0",  # only `bulwark jobs run` resumes: the test says when
    )


async def refresh_tab(
    stop: asyncio.Event, client: httpx.AsyncClient, cookie: str, log: dict[str, Any]
) -> None:
    """A tab refreshing in a loop. A request the kill cut off is retried with the same cookie, as
    an SPA does: within the grace period it gets the successor the lost answer carried."""
    while not stop.is_set():
        try:
            r = await client.post("/api/v1/auth/refresh", headers=with_cookie(cookie))
        except httpx.HTTPError:
            log["cut"] += 1
            await asyncio.sleep(0.05)
            continue
        log["statuses"].append(r.status_code)
        if r.status_code == 200:
            successor = refresh_cookie_of(r)
            assert successor is not None
            cookie = successor
        await asyncio.sleep(0.01)
    log["cookie"] = cookie


async def test_sigkill_mid_refresh_leaves_one_live_successor_per_session_and_revokes_nothing(
    workdir: Path, fault_db: str, fault_pg: PrivatePostgres, fault_redis: PrivateRedis, sink: MailSink
) -> None:
    server = start(workdir, fault_db, fault_redis, sink)
    try:
        workers = server.wait_workers(2)
        address = f"tabs-{uuid.uuid4().hex[:8]}@example.com"
        async with api_client(server) as client:
            await register_verified(client, sink, address)
            tabs = [await login(client, address) for _ in range(TABS)]
        stop = asyncio.Event()
        logs: list[dict[str, Any]] = [{"cut": 0, "statuses": []} for _ in tabs]
        async with fresh_connections(server.base, FRONTEND, timeout=10) as spread:
            running = [
                asyncio.create_task(refresh_tab(stop, spread, tab.refresh_token, log))
                for tab, log in zip(tabs, logs, strict=True)
            ]
            try:
                await asyncio.sleep(1.5)
                victim = workers[0]
                os.kill(victim, signal.SIGKILL)
                killed_at = time.monotonic()
                await asyncio.to_thread(
                    wait_for,
                    lambda: victim not in server.workers() and len(server.workers()) == 2,
                    30,
                    "respawn",
                )
                respawned_after = time.monotonic() - killed_at
                await asyncio.sleep(2)
            finally:
                stop.set()
                await asyncio.gather(*running)

        assert server.alive(), server.log()[-3000:]
        assert sum(len(log["statuses"]) for log in logs) > 50, "too few refreshes to mean anything"
        # Every tab's chain is intact: no refresh was refused (a reuse detection by mistake
        # would revoke the session and answer 401).
        for log in logs:
            assert set(log["statuses"]) <= {200}, log["statuses"]
        conn = await pg(fault_pg, fault_db)
        try:
            doubled = await conn.fetch(
                "SELECT session_id, count(*) FROM refresh_tokens WHERE rotated_at IS NULL "
                "GROUP BY session_id HAVING count(*) > 1"
            )
            assert not doubled, doubled
            sessions = {str(tab.session_id) for tab in tabs}
            rows = await conn.fetch(
                "SELECT id::text, revoked_at FROM sessions WHERE user_id = "
                "(SELECT id FROM users WHERE email = $1)",
                address,
            )
            assert {r["id"] for r in rows} == sessions
            assert all(r["revoked_at"] is None for r in rows), rows
            # The one live token of each session is the one its tab holds.
            for tab, log in zip(tabs, logs, strict=True):
                live = await conn.fetch(
                    "SELECT token_hash FROM refresh_tokens "
                    "WHERE session_id = $1::uuid AND rotated_at IS NULL",
                    tab.session_id,
                )
                assert [r["token_hash"] for r in live] == [token_hash(log["cookie"])]
        finally:
            await conn.close()
        print(
            f"worker respawned after {respawned_after:.1f}s; cut requests: {sum(log['cut'] for log in logs)}"
        )
    finally:
        server.stop()


async def test_sigkill_mid_account_closure_resumes_with_jobs_run_and_leaves_nothing_half_done(
    workdir: Path, fault_db: str, fault_pg: PrivatePostgres, fault_redis: PrivateRedis, sink: MailSink
) -> None:
    server = start(workdir, fault_db, fault_redis, sink)
    try:
        server.wait_workers(2)
        address = f"closing-{uuid.uuid4().hex[:8]}@example.com"
        async with api_client(server) as client:
            await register_verified(client, sink, address)
            first = await login(client, address)
            other = await login(client, address)

            holder = await pg(fault_pg, fault_db)
            try:
                transaction = holder.transaction()
                await transaction.start()
                # The pipeline's second step (stopping bridges) waits here, after the request
                # committed and the first step (sessions revoked) is recorded.
                await holder.execute("LOCK TABLE bridges IN ACCESS EXCLUSIVE MODE")
                closing = asyncio.create_task(
                    client.request(
                        "DELETE",
                        "/api/v1/me",
                        json={"password": PASSWORD},
                        headers=bearer(first.access_token),
                    )
                )
                waiting = await _backend_waiting(holder)
                pid = await asyncio.to_thread(
                    _worker_with_database_connection, server, waiting, fault_pg.port
                )
                assert pid is not None, "no worker holds the waiting database connection"
                os.kill(pid, signal.SIGKILL)
                with pytest.raises(httpx.HTTPError):
                    await closing  # the worker died with the request
                await transaction.rollback()
            finally:
                await holder.close()
            step = await _closure(fault_pg, fault_db, address)
            assert step is not None and step["step_reached"] == "sessions_revoked", step
            assert step["finished_at"] is None

            # The account is closed from the request's commit on: nothing works meanwhile.
            await asyncio.to_thread(wait_for, lambda: len(server.workers()) == 2, 30, "respawn")
            r = await client.post("/api/v1/auth/login", json={"email": address, "password": PASSWORD})
            assert r.status_code in (401, 403), r.text
            for token in (first.access_token, other.access_token):
                assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 401

            resumed = await asyncio.to_thread(server.cli, "jobs", "run")
            assert resumed.returncode == 0, resumed.stderr
            assert "account closures finished: 1" in resumed.stdout, resumed.stdout
            again = await asyncio.to_thread(server.cli, "jobs", "run")
            assert "account closures finished: 0" in again.stdout, again.stdout

        conn = await pg(fault_pg, fault_db)
        try:
            user = await conn.fetchrow(
                "SELECT u.id, u.email, u.status FROM users u JOIN account_closures c ON c.user_id = u.id"
            )
            assert user["email"] == f"closed:{user['id']}" and user["status"] == "closed", user
            closure = await conn.fetchrow("SELECT * FROM account_closures WHERE user_id = $1", user["id"])
            assert closure["step_reached"] == "personal_data_erased" and closure["finished_at"] is not None
            assert await conn.fetchval("SELECT count(*) FROM memberships WHERE user_id = $1", user["id"]) == 0
            live = await conn.fetchval(
                "SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL", user["id"]
            )
            assert live == 0
            closed_events = await conn.fetchval(
                "SELECT count(*) FROM audit_events WHERE action = 'account.closed' AND target_id = $1",
                str(user["id"]),
            )
            assert closed_events == 1
            leftovers = await conn.fetchval(
                "SELECT count(*) FROM audit_events WHERE details::text LIKE $1", f"%{address}%"
            )
            assert leftovers == 0
        finally:
            await conn.close()
        verified = await asyncio.to_thread(server.cli, "audit", "verify")
        assert verified.returncode == 0 and "intact" in verified.stdout, verified.stdout + verified.stderr
    finally:
        server.stop()


async def _backend_waiting(conn: asyncpg.Connection, timeout: float = 10) -> int:
    """The client port of the server's database connection that waits on our lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        port = await conn.fetchval(
            "SELECT client_port FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND pid <> pg_backend_pid() LIMIT 1"
        )
        if port:
            return int(port)
        await asyncio.sleep(0.05)
    raise TimeoutError("the closure never reached the lock")


def _worker_with_database_connection(server: BulwarkServer, client_port: int, pg_port: int) -> int | None:
    inode = inode_of_tcp_connection(client_port, pg_port)
    for pid in server.workers():
        if inode is not None and inode in socket_inodes(pid):
            return pid
    return None


async def _closure(fault_pg: PrivatePostgres, fault_db: str, address: str) -> Any:
    conn = await pg(fault_pg, fault_db)
    try:
        return await conn.fetchrow(
            "SELECT c.step_reached, c.finished_at FROM account_closures c JOIN users u ON u.id = c.user_id "
            "WHERE u.email = $1",
            address,
        )
    finally:
        await conn.close()
