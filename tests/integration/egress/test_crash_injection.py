"""Crash injection: the egress job is killed (in a process of its own, `os._exit`, no cleanup)
between every pair of its steps, then run again. After every kill the database holds no address
both somebody's and available (its constraints) and none lost; no address leaves `draining`
without the gateway's confirmed detach of its holder; and the rerun ends where an uninterrupted
run would have, on both backends, for a fixed pool and for a provider that bills per address."""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from adapters.storage.database import create_engine
from adapters.storage.tables import egress_transitions
from application.egress_ledger import start_teardown_of
from domain import egress
from domain.egress import SYSTEM, EgressState
from tests.conftest import _create_database, _drop_database
from tests.egress_doubles import FixedPool, GrowingProvider
from tests.integration.egress.seed import NOW, pool
from tests.integration.egress.world import EgressWorld

ROOT = Path(__file__).resolve().parents[3]
LATER = NOW + timedelta(days=8)  # past the downgrade grace and the cooldown of the setup


@pytest.fixture(params=["sqlite", "postgres"])
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """A maker of fresh migrated databases: one per crash point."""
    made: list[str] = []
    if request.param == "sqlite":
        template = Path(make_url(str(request.getfixturevalue("sqlite_url"))).database or "")

        def make_sqlite() -> str:
            copy = tmp_path / f"crash-{uuid.uuid4().hex[:8]}.sqlite3"
            shutil.copy(template, copy)
            return f"sqlite+aiosqlite:///{copy}"

        yield make_sqlite
        return
    base = str(request.getfixturevalue("pg_base_url"))
    template_name = str(request.getfixturevalue("pg_template"))

    def make_pg() -> str:
        name = f"bulwark_crash_{uuid.uuid4().hex[:10]}"
        asyncio.run(_create_database(base, name, template=template_name))
        made.append(name)
        return make_url(base).set(database=name).render_as_string(hide_password=False)

    try:
        yield make_pg
    finally:
        for name in made:
            asyncio.run(_drop_database(base, name))


def _provider(kind: str, state_dir: Path) -> FixedPool | GrowingProvider:
    return (
        FixedPool(pool(5))
        if kind == "static"
        else GrowingProvider(quota=5, state_file=state_dir / "provider.json")
    )


async def _setup(url: str, kind: str, state_dir: Path) -> dict[str, object]:
    """Every teardown stage at once: a closed holder, a draining and a cooling address, a paying
    holder, a downgrade whose grace ends, and a paying user waiting for an address."""
    engine = create_engine(url, pool_size=2)
    try:
        world = EgressWorld.wire(engine, _provider(kind, state_dir))
        closed, draining, cooling, paying, downgraded, waiting = await world.users(6)
        held = {}
        for name, user in (
            ("closed", closed),
            ("draining", draining),
            ("cooling", cooling),
            ("paying", paying),
            ("downgraded", downgraded),
        ):
            allocation = await world.ledger.allocate(user, SYSTEM, "setup")
            assert allocation.address is not None
            held[name] = allocation.address.address
        assert (await world.ledger.allocate(waiting, SYSTEM, "setup")).address is None
        async with world.ports.uow() as uow:
            await start_teardown_of(uow, draining, NOW, SYSTEM, "setup")
            await start_teardown_of(uow, cooling, NOW, SYSTEM, "setup")
            current = await uow.egress.get(held["cooling"])
            assert current is not None
            move = egress.detached(current, NOW, world.ports.policy.cooldown)
            assert move is not None and await uow.egress.apply(move)
            await uow.commit()
        with (state_dir / "detached.jsonl").open("a") as out:
            out.write(json.dumps([str(cooling), held["cooling"]]) + "\n")
        # Their teardowns began on their downgrades' grace ending: they want no address again.
        await world.set_user(draining, plan="free")
        await world.set_user(cooling, plan="free")
        await world.set_user(downgraded, plan="free")
        await world.ledger.follow_plan(downgraded, SYSTEM)
        await world.close(closed)
        return {"users": (closed, draining, cooling, paying, downgraded, waiting), "held": held}
    finally:
        await engine.dispose()


def _run_job(url: str, kind: str, state_dir: Path, crash_at: int) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.integration.egress._job_runner",
            url,
            kind,
            str(state_dir),
            LATER.isoformat(),
            str(crash_at),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'src'}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode in (0, 137), done.stderr
    return done.stdout.strip()


async def _check_after_kill(url: str, kind: str, state_dir: Path, pool_before: set[str]) -> None:
    engine = create_engine(url, pool_size=2)
    try:
        world = EgressWorld.wire(engine, _provider(kind, state_dir))
        rows = await world.ledger_rows()
        async with engine.connect() as connection:
            history = list(await connection.execute(select(egress_transitions)))
    finally:
        await engine.dispose()
    # Nothing lost: every address known before is still in the ledger, in exactly one state.
    assert pool_before <= set(rows)
    for state, holder in rows.values():
        assert (holder is None) == (state in (EgressState.AVAILABLE, EgressState.RELEASED))
    # No address reached cooling (and so the pool), nor was given back to the provider, without
    # its holder's confirmed detach.
    confirmed = {tuple(json.loads(line)) for line in (state_dir / "detached.jsonl").read_text().splitlines()}
    for entry in history:
        if entry.to_state == "cooling" or (entry.from_state, entry.to_state) == ("draining", "released"):
            assert (str(entry.user_id), entry.address) in confirmed


async def _final(
    url: str, kind: str, state_dir: Path
) -> tuple[dict[str, tuple[EgressState, uuid.UUID | None]], list[str]]:
    engine = create_engine(url, pool_size=2)
    try:
        world = EgressWorld.wire(engine, _provider(kind, state_dir))
        rows = await world.ledger_rows()
        owned = [p.address for p in await world.provider.owned()]
    finally:
        await engine.dispose()
    return rows, owned


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["static", "cloud"])
def test_killing_the_job_between_any_two_steps_loses_nothing_and_the_rerun_finishes(
    databases: object, kind: str, tmp_path: Path
) -> None:
    make = databases  # type: ignore[assignment]
    crash_at = 0
    while True:
        crash_at += 1
        url = make()  # type: ignore[operator]
        state_dir = tmp_path / f"{kind}-{crash_at}"
        state_dir.mkdir()
        scene = asyncio.run(_setup(url, kind, state_dir))
        closed, draining, _cooling, paying, downgraded, waiting = scene["users"]  # type: ignore[misc]
        held: dict[str, str] = scene["held"]  # type: ignore[assignment]
        said = _run_job(url, kind, state_dir, crash_at)
        if said.startswith("crashed-never"):
            break
        assert said.startswith(f"killed at {crash_at}")
        asyncio.run(_check_after_kill(url, kind, state_dir, set(held.values())))
        assert _run_job(url, kind, state_dir, 0).startswith("crashed-never")
        asyncio.run(_check_after_kill(url, kind, state_dir, set(held.values())))
        rows, owned = asyncio.run(_final(url, kind, state_dir))
        for name, user in (("closed", closed), ("draining", draining), ("downgraded", downgraded)):
            # A fixed pool's address cools; a growing provider's is given back at once.
            after = (EgressState.COOLING, user) if kind == "static" else (EgressState.RELEASED, None)
            assert rows[held[name]] == after, (crash_at, name)
        assert rows[held["paying"]] == (EgressState.ALLOCATED, paying)
        live = [a for a, (state, user) in rows.items() if state is EgressState.ALLOCATED and user == waiting]
        assert len(live) == 1, crash_at  # served once, by the killed run or the rerun
        if kind == "static":
            assert live == [held["cooling"]]
        else:
            assert rows[held["cooling"]] == (EgressState.RELEASED, None)
            # The provider bills for exactly what the ledger holds: no leak, nothing unknown.
            assert sorted(owned) == sorted(a for a, (s, _) in rows.items() if s is not EgressState.RELEASED)
    # The job has at least these steps: 5 holders followed, 3 detaches and their records, a
    # return to the pool (static) or a detach, release and record at the provider (cloud).
    assert crash_at - 1 >= (10 if kind == "static" else 13), crash_at
