"""Benchmark of the egress ledger: dedicated-address allocations per second under contention.

Run: .venv/bin/python bench/egress_allocation.py [--seconds 5] [--rounds 3] [--concurrency 8]

A throw-away PostgreSQL database (127.0.0.1:5432, dropped at the end) migrated by its owner, the
ledger used as the service's unprivileged role (row-level security applies), a pool of addresses
and as many paying users. Two processes (the server's two workers) each run `--concurrency`
allocations at once through `EgressLedger.allocate` (lock the user's row, pick an available
address `FOR UPDATE SKIP LOCKED`, write the allocation and its transition, commit), every
allocation for a different user: the contention is on the pool, as in a burst of upgrades.

Side by side in alternating slices, the same processes run the ceiling: a transaction of one
locking read of the user's row, committed (what any allocation costs at least). The figure is the
allocations/s and its ratio to that ceiling, so a shared machine's drift cancels out. After each
allocation slice the ledger is checked (every allocated address to one user, none twice) and
reset. Results go to bench/results/egress.md."""

import argparse
import asyncio
import multiprocessing
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from adapters.clock import SystemClock  # noqa: E402
from adapters.egress.static_pool import StaticPoolProvider  # noqa: E402
from adapters.storage import migrations  # noqa: E402
from adapters.storage.database import create_engine  # noqa: E402
from adapters.storage.service_role import grant_service_role  # noqa: E402
from adapters.storage.unit_of_work import SqlUnitOfWorkFactory  # noqa: E402
from application.egress_ledger import EgressLedger, EgressPorts  # noqa: E402
from domain.egress import SYSTEM  # noqa: E402
from domain.egress_pool import EgressPool  # noqa: E402
from domain.plans import PlanCatalog  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432/postgres"
ROLE = "bulwark_app_bench_egress"
WORKERS = 2
POOL_SIZE = 10000  # addresses and users: more than one slice allocates
PLANS = PlanCatalog.parse("free,pro", "pro")


class _NoMail:
    async def send(self, message: object) -> None:
        return None


def _addresses(count: int) -> list[str]:
    # 198.18.0.0/15 (benchmarking, RFC 2544): never anybody's real address.
    return [f"198.18.{n // 250}.{n % 250 + 1}" for n in range(count)]


async def _setup(owner_url: str, count: int) -> list[uuid.UUID]:
    owner = create_engine(owner_url, pool_size=1)
    await grant_service_role(owner, ROLE)
    await owner.dispose()
    conn = await asyncpg.connect(owner_url.replace("+asyncpg", ""))
    now = datetime.now(UTC)
    users = [uuid.uuid4() for _ in range(count)]
    orgs = [uuid.uuid4() for _ in range(count)]
    await conn.executemany(
        "INSERT INTO organisations (id, name, personal, status, require_2fa, created_at) "
        "VALUES ($1, 'b', true, 'active', false, $2)",
        [(o, now) for o in orgs],
    )
    await conn.executemany(
        "INSERT INTO users (id, email, display_name, password_hash, pepper_version, platform_role, status, "
        "default_org_id, created_at, plan) VALUES ($1, $2, 'b', 'x', 'p', 'user', 'active', $3, $4, 'pro')",
        [(u, f"{u.hex}@bench.invalid", o, now) for u, o in zip(users, orgs, strict=True)],
    )
    await conn.executemany(
        "INSERT INTO egress_addresses (address, provider_ref, state, since) VALUES ($1, $1, 'available', $2)",
        [(a, now) for a in _addresses(count)],
    )
    await conn.close()
    return users


async def _reset(owner_url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(owner_url.replace("+asyncpg", ""))
    held = await conn.fetch("SELECT address, user_id FROM egress_addresses WHERE state = 'allocated'")
    users = [r["user_id"] for r in held]
    assert len(set(users)) == len(users), "a user holds two addresses"
    await conn.execute("DELETE FROM egress_transitions")
    await conn.execute("DELETE FROM egress_waiting")
    await conn.execute("UPDATE egress_addresses SET state = 'available', user_id = NULL, grace_until = NULL")
    await conn.close()
    return len(held), len(set(users))


def _worker(
    app_url: str,
    users: list[uuid.UUID],
    mode: str,
    seconds: float,
    concurrency: int,
    out: "multiprocessing.Queue[float]",
) -> None:
    async def run() -> float:
        engine = create_engine(app_url, pool_size=concurrency)
        ports = EgressPorts(
            uow=SqlUnitOfWorkFactory(engine),
            clock=SystemClock(),
            provider=StaticPoolProvider(EgressPool(())),
            gateway=None,
            mailer=_NoMail(),
            plans=PLANS,
        )
        ledger = EgressLedger(ports)
        queue = list(users)
        done = 0
        start = time.perf_counter()
        deadline = start + seconds

        async def one() -> None:
            nonlocal done
            while queue and time.perf_counter() < deadline:
                user = queue.pop()
                if mode == "allocate":
                    allocation = await ledger.allocate(user, SYSTEM, "bench")
                    if allocation.address is None:
                        raise RuntimeError(f"no address for {user}: {allocation}")
                else:
                    async with ports.uow() as uow:
                        await uow.egress.lock_holder(user)
                        await uow.commit()
                done += 1

        await asyncio.gather(*(one() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start  # shorter than `seconds` if the users ran out
        await engine.dispose()
        return done / elapsed

    try:
        out.put(asyncio.run(run()))
    except Exception as error:  # the parent reports it instead of waiting for a figure
        out.put(f"{type(error).__name__}: {error}")  # type: ignore[arg-type]
        raise


def _slice(app_url: str, users: list[uuid.UUID], mode: str, seconds: float, concurrency: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[float] = ctx.Queue()
    shares = [users[i::WORKERS] for i in range(WORKERS)]
    procs = [ctx.Process(target=_worker, args=(app_url, s, mode, seconds, concurrency, out)) for s in shares]
    for p in procs:
        p.start()
    # Each worker's rate over its own window (process start-up and imports are outside it).
    rates = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    failed = [r for r in rates if isinstance(r, str)]
    if failed:
        raise SystemExit(f"a worker failed: {failed[0]}")
    return sum(rates)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    name = f"bulwark_bench_egress_{uuid.uuid4().hex[:8]}"
    owner_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    app_url = f"postgresql+asyncpg://{ROLE}@127.0.0.1:5432/{name}"

    async def create() -> None:
        conn = await asyncpg.connect(PG)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(PG)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    asyncio.run(create())
    try:
        migrations.upgrade(owner_url)  # runs its own event loop
        users = asyncio.run(_setup(owner_url, POOL_SIZE))
        rows = []
        for round_ in range(args.rounds):
            allocations = _slice(app_url, users, "allocate", args.seconds, args.concurrency)
            held, distinct = asyncio.run(_reset(owner_url))
            ceiling = _slice(app_url, users, "ceiling", args.seconds, args.concurrency)
            rows.append((round_ + 1, allocations, ceiling, held, distinct))
            said = f"round {round_ + 1}: {allocations:.0f} allocations/s, ceiling {ceiling:.0f} tx/s"
            print(f"{said}, {held} held by {distinct} users")
    finally:
        asyncio.run(drop())
    alloc = sorted(r[1] for r in rows)[len(rows) // 2]
    ceil = sorted(r[2] for r in rows)[len(rows) // 2]
    table = [
        "| figure | value |",
        "|---|---|",
        f"| allocations/s under contention ({WORKERS} processes x {args.concurrency} at once, "
        f"median of {args.rounds}) | {alloc:.0f} |",
        f"| ceiling: one locking read per transaction, tx/s | {ceil:.0f} |",
        f"| ratio | {alloc / ceil:.2f} |",
    ]
    report = "\n".join(table)
    print(report)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "egress.md").write_text(f"{datetime.now(UTC).isoformat()} cpus={os.cpu_count()}\n\n{report}\n")


if __name__ == "__main__":
    main()
