"""Housekeeping as an operator runs it: `bulwark jobs run` once (for a timer), and the workers'
own scheduler when BULWARK_HOUSEKEEPING_INTERVAL_SECONDS is set (embedded backend)."""

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from adapters.storage import migrations
from adapters.storage.database import create_engine
from adapters.storage.tables import sessions
from adapters.storage.unit_of_work import SqlUnitOfWork
from entrypoints.cli import main
from entrypoints.composition import build_container
from tests.e2e.conftest import make_settings
from tests.integration.storage_seed import new_org, new_session, new_user

LONG_AGO = datetime.now(UTC) - timedelta(days=90)


async def a_dead_and_a_live_session(url: str) -> tuple[object, object]:
    engine = create_engine(url)
    try:
        org = new_org(LONG_AGO)
        user = new_user(org, LONG_AGO)
        dead = new_session(user, LONG_AGO)  # its absolute end was 60 days ago
        live = new_session(user, datetime.now(UTC))
        async with SqlUnitOfWork(engine) as uow:
            await uow.orgs.add(org)
            await uow.users.add(user)
            await uow.sessions.add(dead)
            await uow.sessions.add(live)
            await uow.commit()
        return dead.id, live.id
    finally:
        await engine.dispose()


async def session_ids(url: str) -> set[object]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set((await conn.execute(select(sessions.c.id))).scalars())
    finally:
        await engine.dispose()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in [k for k in os.environ if k.startswith("BULWARK_")]:
        monkeypatch.delenv(name)
    return {"BULWARK_DATA_DIR": str(tmp_path / "data")}


def test_jobs_run_purges_dead_sessions_once_and_says_what_it_did(env: dict[str, str], tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'bulwark.sqlite3'}"
    (tmp_path / "data").mkdir()
    migrations.upgrade(url)
    _dead, live = asyncio.run(a_dead_and_a_live_session(url))

    ran = CliRunner().invoke(main, ["jobs", "run"], env=env)

    assert ran.exit_code == 0, ran.output
    assert "sessions deleted: 1" in ran.output and "rate-limit keys checked" in ran.output
    assert asyncio.run(session_ids(url)) == {live}
    again = CliRunner().invoke(main, ["jobs", "run"], env=env)
    assert "sessions deleted: 0" in again.output


async def test_the_workers_scheduler_purges_when_an_interval_is_set(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, housekeeping_interval_seconds=0.2)
    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url)
    dead, live = await a_dead_and_a_live_session(settings.effective_database_url)
    container = build_container(settings)
    await container.start()
    try:
        for _ in range(50):
            if dead not in await session_ids(settings.effective_database_url):
                break
            await asyncio.sleep(0.1)
    finally:
        await container.stop()
    assert await session_ids(settings.effective_database_url) == {live}
