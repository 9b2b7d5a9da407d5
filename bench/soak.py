"""Soak: `bulwark serve` under a steady mixed load for a long while, watching for leaks.

Run: .venv/bin/python bench/soak.py [--minutes 10] [--warmup 2] [--rate 100]

It starts its own PostgreSQL cluster and redis-server (tests/fault_servers.py: private, on free
ports, so every connection they count is the service's), an SMTP sink, and `bulwark serve` with
BULWARK_ENV=production, 2 granian workers and the default argon2id cost. Then a paced mix at
`--rate` requests/s in all, on a fixed set of keep-alive connections:

  45 % GET /api/v1/me            (bearer tokens of 8 sessions, round robin)
  25 % POST /api/v1/authz/check
  15 % POST /api/v1/auth/refresh (8 tabs, each following its own rotation chain)
  10 % GET /api/v1/me/sessions   (a database read on every call)
   5 % login then logout         (argon2id, a session row, a revocation published to every worker)

Every 15 s it samples each worker's RSS and open file descriptors, the server's PostgreSQL
connections (pg_stat_activity) and Redis clients (INFO clients). After the warm-up, RSS must grow
by less than 10 % per worker, and descriptors and connections must end where they were at the
end of the warm-up (a small slack for connections open at the instant of the sample). Prints a
markdown table and writes bench/results/soak.md; exits 1 when a target is missed."""

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import redis

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.fault_servers import (  # noqa: E402  (the fixture kit of the fault suite)
    FRONTEND,
    PASSWORD,
    BulwarkServer,
    bearer,
    login,
    mail_sink,
    private_postgres,
    private_redis,
    refresh_cookie_of,
    register_verified,
    start_bulwark,
    with_cookie,
)

SAMPLE_SECONDS = 15.0
RSS_GROWTH_LIMIT = 0.10
FD_SLACK = 4  # keep-alive sockets of the load can move between samples
CONNECTION_SLACK = 4
MIX = {"me": 0.45, "authz": 0.25, "refresh": 0.15, "sessions": 0.10, "login": 0.05}


@dataclass
class Sample:
    at: float
    rss_kib: dict[int, int]
    fds: dict[int, int]
    pg_connections: int
    redis_clients: int
    requests: int
    failures: int


@dataclass
class Tally:
    requests: int = 0
    failures: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, status: int, ok: bool) -> None:
        self.requests += 1
        if not ok:
            self.failures += 1
        key = f"{name} {status}"
        self.by_status[key] = self.by_status.get(key, 0) + 1


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def sample(server: BulwarkServer, pg_dsn: str, database: str, redis_url: str, tally: Tally) -> Sample:
    workers = server.workers()
    conn = await asyncpg.connect(pg_dsn)
    try:
        pg_connections = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", database
        )
    finally:
        await conn.close()
    client = redis.Redis.from_url(redis_url)
    try:
        redis_clients = int(client.info("clients")["connected_clients"]) - 1  # less this one
    finally:
        client.close()
    return Sample(
        time.monotonic(),
        {pid: rss_kib(pid) for pid in workers},
        {pid: fd_count(pid) for pid in workers},
        int(pg_connections),
        redis_clients,
        tally.requests,
        tally.failures,
    )


async def paced(rate: float, stop: asyncio.Event, step: object) -> None:
    """Calls `step()` at `rate` per second on a fixed schedule (late calls do not pile up)."""
    interval = 1.0 / rate
    next_at = time.monotonic()
    while not stop.is_set():
        await step()  # type: ignore[operator]
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            next_at = time.monotonic()


async def drive(
    server: BulwarkServer, sink: object, args: argparse.Namespace, tally: Tally, stop: asyncio.Event
) -> None:
    run = uuid.uuid4().hex[:6]
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(
        base_url=server.base, headers={"origin": FRONTEND}, timeout=15, limits=limits
    ) as client:
        address = f"soak-{run}@bench.invalid"
        churn = f"soak-churn-{run}@bench.invalid"
        await register_verified(client, sink, address)  # type: ignore[arg-type]
        await register_verified(client, sink, churn)  # type: ignore[arg-type]
        sessions = [await login(client, address) for _ in range(8)]
        tokens = itertools.cycle([s.access_token for s in sessions])
        tabs = [s.refresh_token for s in sessions]
        tab_turn = itertools.cycle(range(len(tabs)))
        authz_body = json.dumps({"permission": "orders:create"})

        async def call(name: str, method: str, path: str, **kwargs: object) -> httpx.Response | None:
            try:
                r = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
            except httpx.HTTPError:
                tally.count(name, 0, False)
                return None
            tally.count(name, r.status_code, r.status_code < 400)
            return r

        async def me() -> None:
            await call("me", "GET", "/api/v1/me", headers=bearer(next(tokens)))

        async def authz() -> None:
            await call(
                "authz",
                "POST",
                "/api/v1/authz/check",
                content=authz_body,
                headers={**bearer(next(tokens)), "content-type": "application/json"},
            )

        async def refresh() -> None:
            i = next(tab_turn)
            r = await call("refresh", "POST", "/api/v1/auth/refresh", headers=with_cookie(tabs[i]))
            if r is not None and r.status_code == 200:
                tabs[i] = refresh_cookie_of(r) or tabs[i]

        async def sessions_list() -> None:
            await call("sessions", "GET", "/api/v1/me/sessions", headers=bearer(next(tokens)))

        async def login_logout() -> None:
            r = await call("login", "POST", "/api/v1/auth/login", json={"email": churn, "password": PASSWORD})
            if r is None or r.status_code != 200:
                return
            cookie = refresh_cookie_of(r) or ""
            await call(
                "logout",
                "POST",
                "/api/v1/auth/logout",
                headers={**bearer(r.json()["access_token"]), **with_cookie(cookie)},
            )

        steps = {
            "me": me,
            "authz": authz,
            "refresh": refresh,
            "sessions": sessions_list,
            "login": login_logout,
        }
        # Two loops per kind (one slow answer does not stall its whole share), each at half its rate.
        loops = [
            asyncio.create_task(paced(args.rate * share / 2, stop, steps[name]))
            for name, share in MIX.items()
            for _ in range(2)
        ]
        await asyncio.gather(*loops)


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def growth(before: float, after: float) -> float:
    return (after - before) / before if before else 0.0


def report(
    samples: list[Sample], warm: Sample, tally: Tally, args: argparse.Namespace, seconds: float
) -> tuple[str, bool]:
    last = samples[-1]
    rows: list[str] = []
    ok = True
    for pid in sorted(warm.rss_kib):
        if pid not in last.rss_kib:
            rows.append(f"| worker {pid} | gone (respawned?) | present throughout | FAIL |")
            ok = False
            continue
        g = growth(warm.rss_kib[pid], last.rss_kib[pid])
        peak = max(s.rss_kib.get(pid, 0) for s in samples)
        passed = g < RSS_GROWTH_LIMIT
        ok &= passed
        rows.append(
            f"| worker RSS (pid {pid}) | {warm.rss_kib[pid] / 1024:.1f} → {last.rss_kib[pid] / 1024:.1f} MiB "
            f"({g * 100:+.1f} %, peak {peak / 1024:.1f}) | < +10 % after warm-up | {verdict(passed)} |"
        )
    for pid in sorted(warm.fds):
        if pid in last.fds:
            passed = last.fds[pid] <= warm.fds[pid] + FD_SLACK
            ok &= passed
            peak = max(s.fds.get(pid, 0) for s in samples)
            rows.append(
                f"| open fds (pid {pid}) | {warm.fds[pid]} → {last.fds[pid]} (peak {peak}) | no growth "
                f"(±{FD_SLACK}) | {verdict(passed)} |"
            )
    pg_peak = max(s.pg_connections for s in samples)
    passed = last.pg_connections <= warm.pg_connections + CONNECTION_SLACK
    ok &= passed
    rows.append(
        f"| PostgreSQL connections | {warm.pg_connections} → {last.pg_connections} (peak {pg_peak}) "
        f"| no growth (±{CONNECTION_SLACK}) | {verdict(passed)} |"
    )
    redis_peak = max(s.redis_clients for s in samples)
    passed = last.redis_clients <= warm.redis_clients + CONNECTION_SLACK
    ok &= passed
    rows.append(
        f"| Redis clients | {warm.redis_clients} → {last.redis_clients} (peak {redis_peak}) | no growth "
        f"(±{CONNECTION_SLACK}) | {verdict(passed)} |"
    )
    failure_share = tally.failures / tally.requests if tally.requests else 1.0
    passed = failure_share < 0.001
    ok &= passed
    rows.append(
        f"| requests | {tally.requests} in {seconds / 60:.1f} min ({tally.requests / seconds:.0f}/s), "
        f"{tally.failures} failed | < 0.1 % failed | {verdict(passed)} |"
    )
    table = "\n".join(
        [
            f"Soak {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {args.minutes:g} min at "
            f"{args.rate:g} req/s (warm-up {args.warmup:g} min), 2 granian workers, "
            f"BULWARK_ENV=production, on a shared {os.cpu_count()}-core machine.",
            "",
            "| measurement | result | target | verdict |",
            "|---|---|---|---|",
            *rows,
        ]
    )
    trace = "\n".join(
        f"  t={s.at - samples[0].at:6.0f}s rss={','.join(f'{v / 1024:.1f}' for v in s.rss_kib.values())} MiB "
        f"fds={','.join(str(v) for v in s.fds.values())} pg={s.pg_connections} redis={s.redis_clients} "
        f"requests={s.requests} failed={s.failures}"
        for s in samples
    )
    return f"{table}\n\nSamples:\n\n```\n{trace}\n```\n", ok


async def soak(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bulwark-soak-"))
    with private_postgres() as pg, private_redis() as rd, mail_sink() as sink:
        database = "bulwark_soak"
        url = pg.create_database(database)
        server = start_bulwark(
            workdir,
            url,
            rd.url,
            sink,
            argon2_memory_kib=str(46 * 1024),  # the default cost, not the tests' floor
            login_limit_per_account="1000000/1",
            login_limit_per_ip="1000000/1",
            register_limit_per_ip="1000000/1",
        )
        try:
            server.wait_workers(2)
            tally = Tally()
            stop = asyncio.Event()
            started = time.monotonic()
            load = asyncio.create_task(drive(server, sink, args, tally, stop))
            samples: list[Sample] = []
            warm: Sample | None = None
            try:
                while time.monotonic() - started < args.minutes * 60:
                    await asyncio.sleep(SAMPLE_SECONDS)
                    if load.done():
                        load.result()  # the load stopped early: say why
                    samples.append(await sample(server, pg.dsn(database), database, rd.url, tally))
                    if warm is None and time.monotonic() - started >= args.warmup * 60:
                        warm = samples[-1]
                    print(
                        f"soak: {(time.monotonic() - started) / 60:4.1f} min, {tally.requests} requests, "
                        f"{tally.failures} failed, rss "
                        + ", ".join(f"{v / 1024:.1f}" for v in samples[-1].rss_kib.values())
                        + f" MiB, fds {list(samples[-1].fds.values())}, pg {samples[-1].pg_connections}, "
                        f"redis {samples[-1].redis_clients}",
                        flush=True,
                    )
            finally:
                stop.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(load, 30)
            assert warm is not None, "the run ended before the warm-up did"
            text, ok = report(samples, warm, tally, args, time.monotonic() - started)
            statuses = ", ".join(f"{k}: {v}" for k, v in sorted(tally.by_status.items()))
            text += f"\nAnswers by kind and status: {statuses}\n"
        finally:
            server.stop()
    print(text)
    results = BENCH_DIR / "results"
    results.mkdir(exist_ok=True)
    (results / "soak.md").write_text(text)
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the whole run")
    parser.add_argument("--warmup", type=float, default=2.0, help="minutes before the baseline sample")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second, all kinds together")
    args = parser.parse_args()
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())
