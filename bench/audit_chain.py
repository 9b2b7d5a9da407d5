"""Audited writes per second against plain inserts, side by side in one run (issue 21, part 1).

Run: .venv/bin/python bench/audit_chain.py [--seconds 4] [--rounds 3] [--writers 8 64] [--pg DSN]

A throw-away PostgreSQL database (127.0.0.1:5432 unless --pg names another server; dropped at the
end) migrated to head. Two client
processes (like the service's two granian workers) each drive half of N concurrent writers, every
writer on its own connection, in a loop:

- audited: a unit of work, `uow.audit.append(event)`, `uow.commit()` -- what every audited action
  of the service does for its entry;
- plain:   `engine.begin()`, one INSERT of a row with the same columns into an ordinary table
  (bigserial id, primary key, the same (org_id, id) index), commit.

Slices alternate plain / audited, `--rounds` times each, so both see the same machine state; each
figure is commits/s summed over the slices of its kind. While audited slices run, the audit log's
sealer runs in this process every second (`--seal-every`), as each worker's job does by default
(when the checkout has one). Afterwards the sealer catches up and the chain is verified end to end.

Writes a markdown table to bench/results/audit_chain.md; exits 1 if a ratio is below the target."""

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import secrets
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from run import PG_ADMIN_DSN, machine

from adapters.storage import migrations

try:
    from adapters.storage.audit_verification import verify_chain
except ImportError:  # a checkout from before issue 21 (measuring the "before" figure)
    from adapters.storage.audit_log import verify_chain  # type: ignore[attr-defined,no-redef]
from adapters.storage.database import create_engine
from adapters.storage.unit_of_work import SqlUnitOfWork
from domain.audit import ActorKind, AuditEvent

BENCH_DIR = Path(__file__).resolve().parent
TARGET_RATIO = 0.8
PROCESSES = 2
SEAL_EVERY = 1.0  # BULWARK_AUDIT_SEAL_INTERVAL_SECONDS' default

PLAIN_TABLE = """
CREATE TABLE bench_plain_rows (
    id bigserial PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    actor_user_id uuid,
    actor_kind varchar(20) NOT NULL,
    org_id uuid,
    action varchar(100) NOT NULL,
    target_type varchar(60),
    target_id varchar(200),
    source_ip varchar(64),
    user_agent varchar(512),
    request_id varchar(100),
    details json NOT NULL
);
CREATE INDEX ix_bench_plain_rows_org_id_id ON bench_plain_rows (org_id, id);
"""
PLAIN_INSERT = (
    "INSERT INTO bench_plain_rows (occurred_at, actor_user_id, actor_kind, org_id, action, target_type, "
    "target_id, source_ip, user_agent, request_id, details) VALUES (:occurred_at, :actor_user_id, "
    ":actor_kind, :org_id, :action, :target_type, :target_id, :source_ip, :user_agent, :request_id, "
    "CAST(:details AS json))"
)


def event(n: int) -> AuditEvent:
    return AuditEvent(
        action="org.member_role_changed",
        actor_kind=ActorKind.USER,
        actor_user_id=uuid.uuid4(),
        org_id=uuid.uuid4(),
        target_type="member",
        target_id=str(uuid.uuid4()),
        source_ip="203.0.113.7",
        user_agent="Mozilla/5.0 (X11; Linux x86_64) bench",
        request_id=uuid.uuid4().hex,
        details={"role": "trader", "n": n},
    )


async def _slice(url: str, mode: str, writers: int, start_at: float, stop_at: float) -> int:
    from sqlalchemy import text

    engine = create_engine(url, pool_size=writers)
    plain = text(PLAIN_INSERT)
    try:
        # Every connection opened before the window: the figure is commits, not connects.
        conns = [await engine.connect() for _ in range(writers)]
        for conn in conns:
            await conn.close()
        done = 0

        async def writer(w: int) -> None:
            nonlocal done
            n = 0
            while time.time() < stop_at:
                n += 1
                if mode == "audited":
                    async with SqlUnitOfWork(engine) as uow:
                        await uow.audit.append(event(n))
                        await uow.commit()
                else:
                    e = event(n)
                    async with engine.begin() as conn:
                        await conn.execute(
                            plain,
                            {
                                "occurred_at": datetime.now(UTC),
                                "actor_user_id": e.actor_user_id,
                                "actor_kind": str(e.actor_kind),
                                "org_id": e.org_id,
                                "action": e.action,
                                "target_type": e.target_type,
                                "target_id": e.target_id,
                                "source_ip": e.source_ip,
                                "user_agent": e.user_agent,
                                "request_id": e.request_id,
                                "details": json.dumps(e.details),
                            },
                        )
                if start_at <= time.time() <= stop_at:
                    done += 1

        await asyncio.sleep(max(0.0, start_at - time.time() - 0.3))  # writers start just before
        await asyncio.gather(*(writer(w) for w in range(writers)))
        return done
    finally:
        await engine.dispose()


def run_slice(args: tuple[str, str, int, float, float]) -> int:
    return asyncio.run(_slice(*args))


class Sealer:
    """The checkout's audit sealer, if it has one (the design before issue 21 had none)."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, pool_size=2)
        try:
            from adapters.storage.audit_sealer import SqlAuditSealer
        except ImportError:
            self.sealer: Any = None
        else:
            self.sealer = SqlAuditSealer(self.engine)

    async def seal(self) -> None:
        if self.sealer is not None:
            await self.sealer.seal()

    async def catch_up(self, timeout: float = 60.0) -> float:
        """Seconds until every committed entry is sealed."""
        started = time.monotonic()
        if self.sealer is None:
            return 0.0
        while time.monotonic() - started < timeout:
            report = await self.sealer.seal()
            if report.unsealed == 0:
                break
            await asyncio.sleep(0.05)
        return time.monotonic() - started


async def measure(
    url: str, writers_list: list[int], seconds: float, rounds: int, seal_every: float
) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    rows: list[dict[str, Any]] = []
    sealer = Sealer(url)
    with ctx.Pool(PROCESSES) as pool:
        for writers in writers_list:
            totals = {"plain": 0, "audited": 0}
            for _ in range(rounds):
                for mode in ("plain", "audited"):
                    start_at = time.time() + 1.5
                    stop_at = start_at + seconds
                    per = max(1, writers // PROCESSES)
                    pending = pool.map_async(run_slice, [(url, mode, per, start_at, stop_at)] * PROCESSES)
                    next_seal = time.monotonic() + seal_every
                    while not pending.ready():
                        if mode == "audited" and time.monotonic() >= next_seal:
                            await sealer.seal()
                            next_seal = time.monotonic() + seal_every
                        await asyncio.sleep(0.05)
                    totals[mode] += sum(pending.get())
            lag = await sealer.catch_up()
            plain_rate = totals["plain"] / (seconds * rounds)
            audited_rate = totals["audited"] / (seconds * rounds)
            rows.append(
                {
                    "writers": writers,
                    "plain": plain_rate,
                    "audited": audited_rate,
                    "ratio": audited_rate / plain_rate if plain_rate else 0.0,
                    "catch_up": lag,
                }
            )
            print(f"bench: {rows[-1]}", flush=True)
    await sealer.engine.dispose()
    return rows


async def create_database(admin_dsn: str) -> tuple[str, str]:
    name = f"bulwark_bench_audit_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    server = admin_dsn.split("://", 1)[1].rsplit("/", 1)[0]
    return name, f"postgresql+asyncpg://{server}/{name}"


async def drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--writers", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--seal-every", type=float, default=SEAL_EVERY, help="the sealer's interval (s)")
    parser.add_argument(
        "--pg",
        default=PG_ADMIN_DSN,
        help="the server's admin DSN (another instance when the shared one is full)",
    )
    args = parser.parse_args()
    name, url = await create_database(args.pg)
    try:
        await asyncio.to_thread(migrations.upgrade, url, "head")
        conn = await asyncpg.connect(args.pg.rsplit("/", 1)[0] + f"/{name}")
        try:
            await conn.execute(PLAIN_TABLE)
        finally:
            await conn.close()
        rows = await measure(url, args.writers, args.seconds, args.rounds, args.seal_every)
        engine = create_engine(url, pool_size=2)
        try:
            verified = await verify_chain(engine)
        finally:
            await engine.dispose()
    finally:
        with contextlib.suppress(Exception):
            await drop_database(args.pg, name)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Audit chain bench, {when}, {machine()} (shared machine), PostgreSQL "
        f"{args.pg.split('@')[-1].rsplit('/', 1)[0]}, load average "
        f"{os.getloadavg()[0]:.2f}; {args.rounds} alternating slices of {args.seconds:.0f} s per figure; "
        f"the sealer every {args.seal_every:g} s.",
        "",
        "| writers | plain INSERT + COMMIT /s | audited append + commit /s | ratio | target "
        "| sealer catch-up |",
        "|---|---|---|---|---|---|",
    ]
    passed = True
    for row in rows:
        ok = row["ratio"] >= TARGET_RATIO
        passed &= ok
        lines.append(
            f"| {row['writers']} | {row['plain']:,.0f} | {row['audited']:,.0f} | {row['ratio']:.2f}x | "
            f"≥ {TARGET_RATIO}x {'PASS' if ok else 'FAIL'} | {row['catch_up']:.2f} s |"
        )
    lines += [
        "",
        "Chain verified afterwards: "
        + (
            f"intact, {verified.records_checked:,} entries, {getattr(verified, 'unsealed', 0)} unsealed."
            if verified.ok
            else f"BROKEN at entry {verified.first_broken_id}: {verified.reason}"
        ),
    ]
    table = "\n".join(lines)
    print(table)
    (BENCH_DIR / "results").mkdir(exist_ok=True)
    (BENCH_DIR / "results" / "audit_chain.md").write_text(table + "\n")
    return 0 if passed and verified.ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
