"""The audit log's monthly partitions on PostgreSQL: created ahead by the service's job, the chain
running across them, and old months detached for archiving while what stays still verifies."""

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.audit_log import SqlAuditLog
from adapters.storage.audit_partitions import (
    ArchiveRefused,
    SqlAuditPartitions,
    next_month,
)
from adapters.storage.audit_sealer import SqlAuditSealer
from adapters.storage.audit_verification import VerifyResult, verify_chain
from adapters.storage.database import create_engine
from domain.audit import AuditEvent
from tests.integration.test_audit_log import assert_refused, tamper

THIS_MONTH = datetime.now(UTC).date().replace(day=1)
LAST_MONTH = (THIS_MONTH - timedelta(days=1)).replace(day=1)


def partition_name(month: date) -> str:
    return f"audit_events_y{month.year:04d}m{month.month:02d}"


def months_from(first: date, count: int) -> list[date]:
    months = [first]
    while len(months) < count:
        months.append(next_month(months[-1]))
    return months


@pytest.fixture
async def pg_engine(fresh_pg_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(fresh_pg_url, pool_size=5)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def service_engine(app_pg_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(app_pg_url, pool_size=2)
    try:
        yield engine
    finally:
        await engine.dispose()


async def append_at(engine: AsyncEngine, when: datetime, action: str) -> int:
    async with engine.begin() as conn:
        return (await SqlAuditLog(conn, clock=lambda: when).append(AuditEvent(action=action))).id


async def partition_of(engine: AsyncEngine, entry_id: int) -> str:
    async with engine.connect() as conn:
        return str(
            (
                await conn.execute(
                    text("SELECT tableoid::regclass::text FROM audit_events WHERE id = :id"), {"id": entry_id}
                )
            ).scalar_one()
        )


async def last_months_partition(engine: AsyncEngine) -> None:
    """A month before the migration ran (as an upgraded database has for its older entries)."""
    async with engine.begin() as conn:
        await conn.execute(text("SELECT bulwark_audit_partition(:month)"), {"month": LAST_MONTH})


async def test_the_service_role_keeps_partitions_created_ahead(service_engine: AsyncEngine) -> None:
    partitions = SqlAuditPartitions(service_engine)
    ahead = [partition_name(m) for m in months_from(THIS_MONTH, 6)]
    # The migration made this month's and the next three; the job adds what is missing.
    assert await partitions.create_ahead(5) == 2
    assert await partitions.create_ahead(5) == 0
    assert set(ahead) <= set(await partitions.attached())
    # It is the only thing the service role may do to the table's structure.
    with pytest.raises(DBAPIError, match=r"permission denied|must be owner"):
        async with service_engine.begin() as conn:
            await conn.execute(text(f"ALTER TABLE audit_events DETACH PARTITION {ahead[0]}"))
    with pytest.raises(DBAPIError, match="between 0 and 36"):
        await partitions.create_ahead(1000)


async def test_an_append_without_its_months_partition_fails_rather_than_vanishing(
    pg_engine: AsyncEngine,
) -> None:
    far = datetime.combine(months_from(THIS_MONTH, 12)[-1], datetime.min.time(), UTC)
    with pytest.raises(DBAPIError, match=r"no partition|does not exist"):
        await append_at(pg_engine, far, "test.too_far_ahead")


async def test_the_chain_runs_across_partitions(pg_engine: AsyncEngine) -> None:
    now = datetime.now(UTC)
    later = datetime.combine(next_month(THIS_MONTH), datetime.min.time(), UTC) + timedelta(hours=1)
    ids = [await append_at(pg_engine, when, f"test.{n}") for n, when in enumerate([now, later, now, later])]
    assert [await partition_of(pg_engine, i) for i in ids] == [
        partition_name(THIS_MONTH),
        partition_name(next_month(THIS_MONTH)),
    ] * 2
    await SqlAuditSealer(pg_engine).seal()
    assert await verify_chain(pg_engine) == VerifyResult(ok=True, records_checked=4)


async def test_updates_and_truncation_of_a_partition_itself_are_refused(pg_engine: AsyncEngine) -> None:
    entry = await append_at(pg_engine, datetime.now(UTC), "test.kept")
    name = partition_name(THIS_MONTH)
    await assert_refused(pg_engine, f"UPDATE {name} SET action = 'forged' WHERE id = {entry}")  # noqa: S608
    await assert_refused(pg_engine, f"DELETE FROM {name}")  # noqa: S608
    await assert_refused(pg_engine, f"TRUNCATE {name}")


async def test_a_detached_month_leaves_what_stays_verifiable(pg_engine: AsyncEngine) -> None:
    """Last month is archived. One of its entries took its id after one of this month's (the
    writer's clock was read just before midnight, its id just after): the chain still runs
    through it, by its link."""
    await last_months_partition(pg_engine)
    old = datetime.combine(THIS_MONTH, datetime.min.time(), UTC) - timedelta(hours=1)
    new = datetime.now(UTC)
    plan = [old, old, new, old, new, new]  # ids 1, 2, 4 last month; 3, 5, 6 this month
    ids = [await append_at(pg_engine, when, f"test.{n}") for n, when in enumerate(plan)]
    await SqlAuditSealer(pg_engine).seal()
    assert await verify_chain(pg_engine) == VerifyResult(ok=True, records_checked=6)

    archived = await SqlAuditPartitions(pg_engine).archive_before(THIS_MONTH)
    assert [(a.name, a.first_id, a.last_id, a.entries) for a in archived] == [
        (partition_name(LAST_MONTH), ids[0], ids[3], 3)
    ]
    assert partition_name(LAST_MONTH) not in await SqlAuditPartitions(pg_engine).attached()
    result = await verify_chain(pg_engine)
    assert result == VerifyResult(ok=True, records_checked=3, archived=1, started_after=ids[2] - 1), result

    # What stays is still guarded by the chain: a retained entry deleted is named.
    await tamper(pg_engine, "DELETE FROM audit_events WHERE id = :id", id=ids[4])
    result = await verify_chain(pg_engine)
    assert (result.ok, result.first_broken_id) == (False, ids[4])


async def test_a_month_detached_without_its_archive_record_is_detected(pg_engine: AsyncEngine) -> None:
    await last_months_partition(pg_engine)
    old = datetime.combine(THIS_MONTH, datetime.min.time(), UTC) - timedelta(hours=1)
    ids = [await append_at(pg_engine, when, "test.x") for when in (old, old, datetime.now(UTC))]
    await SqlAuditSealer(pg_engine).seal()
    async with pg_engine.begin() as conn:  # by hand, as the owner, leaving no record
        await conn.execute(text(f"ALTER TABLE audit_events DETACH PARTITION {partition_name(LAST_MONTH)}"))
    result = await verify_chain(pg_engine)
    assert (result.ok, result.first_broken_id) == (False, ids[0])
    assert result.reason is not None and "missing" in result.reason


async def test_archiving_refuses_this_month_and_unsealed_entries(pg_engine: AsyncEngine) -> None:
    partitions = SqlAuditPartitions(pg_engine)
    with pytest.raises(ArchiveRefused, match="still written"):
        await partitions.archive_before(next_month(THIS_MONTH))
    await last_months_partition(pg_engine)
    await append_at(
        pg_engine, datetime.combine(THIS_MONTH, datetime.min.time(), UTC) - timedelta(hours=1), "t"
    )
    with pytest.raises(ArchiveRefused, match="not sealed"):
        await partitions.archive_before(THIS_MONTH)
    assert partition_name(LAST_MONTH) in await partitions.attached()
