"""`bulwark jobs run`, `bulwark audit verify` and `bulwark audit archive` on PostgreSQL, as an
operator runs them: entries appended freely are sealed by the job, verification names the first
broken link after tampering, and archiving refuses what it cannot do in one line."""

import asyncio
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.audit_log import SqlAuditLog
from adapters.storage.database import create_engine
from domain.audit import AuditEvent
from tests.e2e.test_cli_serve import assert_one_line_error, clean_env, run
from tests.integration.test_audit_log import tamper


async def _append(url: str, count: int) -> None:
    engine = create_engine(url, pool_size=1)
    try:
        for n in range(count):
            async with engine.begin() as conn:
                await SqlAuditLog(conn).append(AuditEvent(action=f"test.cli{n}"))
    finally:
        await engine.dispose()


async def _tamper(url: str, statement: str) -> None:
    engine: AsyncEngine = create_engine(url, pool_size=1)
    try:
        await tamper(engine, statement)
    finally:
        await engine.dispose()


def test_jobs_run_seals_and_verify_names_the_first_broken_link(tmp_path: Path, fresh_pg_url: str) -> None:
    env = clean_env(BULWARK_DATA_DIR=str(tmp_path / "data"), BULWARK_DATABASE_URL=fresh_pg_url)
    asyncio.run(_append(fresh_pg_url, 3))
    unsealed = run(["audit", "verify", "--no-seal"], tmp_path, env)
    assert unsealed.returncode == 0, unsealed.stderr
    assert "0 entries verified; 3 newer entries not sealed yet" in unsealed.stdout

    jobs = run(["jobs", "run"], tmp_path, env)
    assert jobs.returncode == 0, jobs.stderr
    assert "audit entries sealed: 3 (through entry 3; 0 waiting" in jobs.stdout
    assert "audit partitions created ahead: 0" in jobs.stdout  # the migration made them
    verified = run(["audit", "verify"], tmp_path, env)
    assert verified.returncode == 0 and "intact: 3 entries verified" in verified.stdout, verified

    asyncio.run(_tamper(fresh_pg_url, "UPDATE audit_events SET action = 'test.nothing' WHERE id = 2"))
    broken = run(["audit", "verify"], tmp_path, env)
    assert broken.returncode == 1
    assert "BROKEN at entry 2" in broken.stderr and "hash" in broken.stderr, broken.stderr


def test_archive_refuses_a_date_that_is_not_the_first_of_a_month_or_still_written(
    tmp_path: Path, fresh_pg_url: str
) -> None:
    env = clean_env(BULWARK_DATA_DIR=str(tmp_path / "data"), BULWARK_DATABASE_URL=fresh_pg_url)
    assert_one_line_error(run(["audit", "archive", "--before", "2026-12-15"], tmp_path, env), "first day")
    assert_one_line_error(run(["audit", "archive", "--before", "2999-01-01"], tmp_path, env), "still written")
    nothing = run(["audit", "archive", "--before", "2020-01-01"], tmp_path, env)
    assert nothing.returncode == 0 and "nothing to detach" in nothing.stdout, nothing
