"""Redis killed for 10 s under load and started again EMPTY (no persistence), against `bulwark
serve` with 2 granian workers: no revoked session is accepted at any moment, logins fail closed
(503 + Retry-After) while their limit cannot be counted and keep their limit afterwards, and the
same processes serve again without a restart."""

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.fault_servers import (
    FRONTEND,
    PASSWORD,
    MailSink,
    PrivateRedis,
    api_client,
    bearer,
    login,
    register_verified,
    start_bulwark,
    wait_for,
    with_cookie,
)
from tests.faults.load import PROBLEM, Outcome, Phases, fresh_connections, loop_until, record, statuses

pytestmark = pytest.mark.slow

OUTAGE_SECONDS = 10.0
ACCOUNT_LIMIT = 5


def email(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"


async def logout(client: httpx.AsyncClient, access_token: str, refresh_token: str) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/logout", headers={**bearer(access_token), **with_cookie(refresh_token)}
    )


async def wrong_login(client: httpx.AsyncClient, address: str) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"email": address, "password": "not the password 1"})


def assert_fails_closed(outcomes: list[Outcome]) -> None:
    for o in outcomes:
        assert o.status == 503, o
        assert o.content_type.startswith(PROBLEM), o
        assert o.retry_after is not None and int(o.retry_after) >= 1, o


async def test_redis_killed_and_back_empty_never_accepts_a_revoked_session_and_keeps_login_limits(
    workdir: Path, fault_db: str, fault_redis: PrivateRedis, sink: MailSink
) -> None:
    server = start_bulwark(
        workdir,
        fault_db,
        fault_redis.url,
        sink,
        login_limit_per_account=f"{ACCOUNT_LIMIT}/60",
        login_limit_per_ip="100000/60",
        register_limit_per_ip="100000/60",
        request_timeout_seconds="5",
    )
    try:
        workers = server.wait_workers(2)
        victim, bystander, guessed, late = (
            email("victim"),
            email("bystander"),
            email("guessed"),
            email("late"),
        )
        async with api_client(server) as client:
            for address in (victim, bystander, guessed, late):
                await register_verified(client, sink, address)
            revoked_first = await login(client, victim)
            revoked_in_outage = await login(client, victim)
            revoked_after = await login(client, victim)
            live = await login(client, bystander)
            assert (
                await logout(client, revoked_first.access_token, revoked_first.refresh_token)
            ).status_code == 204

            phases = Phases()
            stop = asyncio.Event()
            names = ("revoked_first", "in_outage", "live", "authz_revoked", "authz_live")
            seen: dict[str, list[Outcome]] = {name: [] for name in names}
            async with fresh_connections(server.base, FRONTEND, timeout=8) as spread:

                def me(token: str) -> object:
                    return lambda: spread.get("/api/v1/me", headers=bearer(token))

                def authz(token: str) -> object:
                    return lambda: spread.post(
                        "/api/v1/authz/check", json={"permission": "orders:read"}, headers=bearer(token)
                    )

                loops = [
                    loop_until(stop, phases, me(revoked_first.access_token), seen["revoked_first"]),
                    loop_until(stop, phases, me(revoked_in_outage.access_token), seen["in_outage"]),
                    loop_until(stop, phases, me(live.access_token), seen["live"]),
                    loop_until(stop, phases, authz(revoked_first.access_token), seen["authz_revoked"]),
                    loop_until(stop, phases, authz(live.access_token), seen["authz_live"]),
                ]
                running = [asyncio.create_task(loop) for loop in loops]  # type: ignore[arg-type]
                try:
                    await asyncio.sleep(2)

                    # -- the outage ------------------------------------------------------------
                    fault_redis.kill()
                    phases.enter("outage")
                    await asyncio.sleep(1)
                    # A logout while Redis is away: the database has the word from here on.
                    r = await logout(spread, revoked_in_outage.access_token, revoked_in_outage.refresh_token)
                    assert r.status_code == 204, r.text
                    revoked_at = time.monotonic()
                    # Logins cannot be counted: refused, with a time to come back, never admitted.
                    outage_logins: list[Outcome] = []
                    for address in (guessed, bystander):
                        for _ in range(ACCOUNT_LIMIT + 2):
                            await record(phases, lambda a=address: wrong_login(spread, a), outage_logins)
                    await record(
                        phases,
                        lambda: spread.post("/api/v1/auth/login", json={"email": late, "password": PASSWORD}),
                        outage_logins,
                    )
                    assert_fails_closed(outage_logins)
                    await asyncio.sleep(
                        max(0.0, OUTAGE_SECONDS - (time.monotonic() - phases.started["outage"]))
                    )

                    # -- back, empty -----------------------------------------------------------
                    fault_redis.start()
                    phases.enter("recovery")
                    deadline = time.monotonic() + 20
                    recovered: httpx.Response | None = None
                    while time.monotonic() < deadline:
                        recovered = await spread.post(
                            "/api/v1/auth/login", json={"email": late, "password": PASSWORD}
                        )
                        if recovered.status_code == 200:
                            break
                        assert recovered.status_code == 503, recovered.text
                        await asyncio.sleep(0.25)
                    assert recovered is not None and recovered.status_code == 200, "no recovery within 20 s"
                    phases.enter("after")
                    await asyncio.sleep(2)
                finally:
                    stop.set()
                    await asyncio.gather(*running)

                # The limit holds again (counted from zero: the old counts died with Redis).
                after_logins = [await wrong_login(spread, guessed) for _ in range(ACCOUNT_LIMIT + 1)]
                assert [r.status_code for r in after_logins] == [401] * ACCOUNT_LIMIT + [429]
                assert int(after_logins[-1].headers["retry-after"]) >= 1

                # A revocation made after the recovery reaches every worker through Redis again.
                r = await logout(spread, revoked_after.access_token, revoked_after.refresh_token)
                assert r.status_code == 204, r.text
                checks = [
                    await spread.get("/api/v1/me", headers=bearer(revoked_after.access_token))
                    for _ in range(20)
                ]
                assert {c.status_code for c in checks} == {401}
                still = [await spread.get("/api/v1/me", headers=bearer(live.access_token)) for _ in range(10)]
                assert {c.status_code for c in still} == {200}
                same_workers = server.alive() and sorted(server.workers()) == sorted(workers)

                # Workers started after Redis lost everything know the revocations all the same
                # (from the database): replace both, one after the other, and ask again.
                for old in workers:
                    os.kill(old, signal.SIGKILL)
                    await asyncio.to_thread(
                        wait_for,
                        lambda o=old: o not in server.workers() and len(server.workers()) == 2,
                        30,
                        "respawn",
                    )
                await asyncio.to_thread(server.wait_ready)
                for revoked in (revoked_first, revoked_in_outage, revoked_after):
                    answers = [
                        await spread.get("/api/v1/me", headers=bearer(revoked.access_token))
                        for _ in range(10)
                    ]
                    assert {a.status_code for a in answers} == {401}, [a.status_code for a in answers]
                answers = [
                    await spread.get("/api/v1/me", headers=bearer(live.access_token)) for _ in range(10)
                ]
                assert {a.status_code for a in answers} == {200}

        # No revoked session was accepted at any moment, on any worker.
        assert seen["revoked_first"], "the revoked-session loop never ran"
        assert statuses(seen["revoked_first"]).keys() <= {401}, statuses(seen["revoked_first"])
        accepted_late = [o for o in seen["in_outage"] if o.status == 200 and o.sent_at > revoked_at]
        assert not accepted_late, accepted_late[:3]
        # The live session was served throughout (the database answers while Redis is away).
        for phase in ("before", "outage", "after"):
            assert statuses(seen["live"], phase).keys() == {200}, (phase, statuses(seen["live"], phase))
        assert all(o.status in (200, 401) for o in seen["in_outage"]), statuses(seen["in_outage"])
        assert statuses(seen["authz_revoked"]).keys() <= {401}, statuses(seen["authz_revoked"])
        for phase in ("before", "outage", "after"):
            assert statuses(seen["authz_live"], phase).keys() == {200}, (
                phase,
                statuses(seen["authz_live"], phase),
            )
        # Recovered without a restart: the same granian workers.
        assert same_workers
    finally:
        server.stop()
    assert "unhandled error" not in server.log(), server.log()[-3000:]
