"""The sealer on a real PostgreSQL: appends never wait for one another, and the chain is built
after the fact in id order without ever skipping an entry, however the writers' commits
interleave (held open, rolled back, committed out of order)."""

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.storage import audit_sealer
from adapters.storage.audit_log import AuditChainCorrupt, SqlAuditLog
from adapters.storage.audit_sealer import SqlAuditSealer
from adapters.storage.audit_verification import VerifyResult, verify_chain
from adapters.storage.database import create_engine
from adapters.storage.tables import audit_chain_links, audit_events
from application.periodic_job import PeriodicJob
from application.use_cases.audit_housekeeping import SealAuditLog
from domain.audit import AuditEvent
from tests.integration.test_audit_log import append


@pytest.fixture
async def pg_engine(fresh_pg_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(fresh_pg_url, pool_size=10)
    try:
        yield engine
    finally:
        await engine.dispose()


def sealer(engine: AsyncEngine) -> SqlAuditSealer:
    # A short wait: a horizon held back by an open writer is not waited out in these tests.
    return SqlAuditSealer(engine, wait_seconds=0.2)


async def open_writer(engine: AsyncEngine, action: str) -> tuple[AsyncConnection, int]:
    conn = await engine.connect()
    await conn.begin()
    record = await SqlAuditLog(conn).append(AuditEvent(action=action))
    return conn, record.id


async def linked_ids(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        return list(
            (await conn.execute(select(audit_chain_links.c.id).order_by(audit_chain_links.c.id))).scalars()
        )


async def test_an_append_does_not_wait_for_another_writers_open_transaction(pg_engine: AsyncEngine) -> None:
    # The global lock this replaces made the second append wait for the first one's commit.
    held, first_id = await open_writer(pg_engine, "test.held")
    try:
        second = await asyncio.wait_for(append(pg_engine, "test.second"), timeout=5)
        assert second.id == first_id + 1
        assert second.prev_hash is None  # chained later, by the sealer
    finally:
        await held.commit()
        await held.close()


async def test_the_sealer_never_seals_past_a_writer_still_open(pg_engine: AsyncEngine) -> None:
    held, held_id = await open_writer(pg_engine, "test.held")  # id 1, committed last
    later = [await append(pg_engine, f"test.later{n}") for n in range(2)]  # ids 2 and 3, committed
    try:
        report = await sealer(pg_engine).seal()
        # 2 and 3 are committed, but 1 may still commit: nothing can be chained yet.
        assert (report.sealed, report.sealed_through, report.unsealed) == (0, 0, 2)
        assert await linked_ids(pg_engine) == []
        assert await verify_chain(pg_engine) == VerifyResult(ok=True, records_checked=0, unsealed=2)
    finally:
        await held.commit()
        await held.close()
    report = await sealer(pg_engine).seal()
    assert (report.sealed, report.sealed_through, report.unsealed) == (3, later[-1].id, 0)
    assert await linked_ids(pg_engine) == [held_id, *(r.id for r in later)]
    assert await verify_chain(pg_engine) == VerifyResult(ok=True, records_checked=3)


async def test_an_id_whose_writer_rolled_back_is_passed_over(pg_engine: AsyncEngine) -> None:
    doomed, doomed_id = await open_writer(pg_engine, "test.doomed")
    kept = await append(pg_engine, "test.kept")
    assert (await sealer(pg_engine).seal()).sealed == 0
    await doomed.rollback()
    await doomed.close()
    report = await sealer(pg_engine).seal()
    assert (report.sealed, report.sealed_through) == (1, kept.id)
    assert await linked_ids(pg_engine) == [kept.id] and doomed_id < kept.id
    assert await verify_chain(pg_engine) == VerifyResult(ok=True, records_checked=1)


async def test_readers_and_other_tables_writers_do_not_hold_the_sealer_back(pg_engine: AsyncEngine) -> None:
    await append(pg_engine, "test.first")
    async with pg_engine.connect() as reader:
        await reader.begin()
        await reader.execute(select(func.count()).select_from(audit_events))  # a long audit read
        await reader.execute(text("CREATE TEMPORARY TABLE scratch (n int)"))
        await reader.execute(text("INSERT INTO scratch VALUES (1)"))  # an unrelated writer
        report = await sealer(pg_engine).seal()
        assert (report.sealed, report.unsealed) == (1, 0)
        await reader.rollback()


async def test_sealing_under_concurrent_out_of_order_commits_never_skips_an_entry(
    pg_engine: AsyncEngine,
) -> None:
    """Writers hold their transactions open for random times (so later ids often commit first),
    some roll back, and sealers run all along, two at a time. In the end every committed entry
    has its link, in id order, and nothing else has one."""
    rng = random.Random(21)
    committed: list[int] = []
    stop = asyncio.Event()

    async def writer(n: int) -> None:
        await asyncio.sleep(rng.random() * 0.3)
        async with pg_engine.connect() as conn:
            await conn.begin()
            record = await SqlAuditLog(conn).append(AuditEvent(action=f"test.w{n}", details={"n": n}))
            await asyncio.sleep(rng.random() * 0.15)
            if n % 7 == 0:
                await conn.rollback()
                return
            await conn.commit()
            committed.append(record.id)

    async def keep_sealing() -> None:
        one = SqlAuditSealer(pg_engine, wait_seconds=0.01)
        while not stop.is_set():
            await one.seal()
            await asyncio.sleep(0.005)

    sealers = [asyncio.create_task(keep_sealing()) for _ in range(2)]
    await asyncio.gather(*(writer(n) for n in range(60)))
    stop.set()
    await asyncio.gather(*sealers)
    final = await SqlAuditSealer(pg_engine, wait_seconds=2.0).seal()
    assert final.unsealed == 0
    assert await linked_ids(pg_engine) == sorted(committed)
    assert await verify_chain(pg_engine) == VerifyResult(ok=True, records_checked=len(committed))


async def test_a_sealer_that_trusted_a_horizon_too_early_would_be_caught(
    pg_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards the guard: without the wait for open writers, the entry committed last is left
    outside the chain for good, and verification names it."""

    async def nobody_writing(_conn: AsyncConnection) -> frozenset[str]:
        return frozenset()

    monkeypatch.setattr(audit_sealer.SqlAuditSealer, "_writers", staticmethod(nobody_writing))
    held, held_id = await open_writer(pg_engine, "test.held")
    await append(pg_engine, "test.later")
    await sealer(pg_engine).seal()
    await held.commit()
    await held.close()
    await sealer(pg_engine).seal()
    result = await verify_chain(pg_engine)
    assert (result.ok, result.first_broken_id) == (False, held_id)
    assert result.reason is not None and "not covered" in result.reason


async def test_a_missing_head_stops_the_sealer(pg_engine: AsyncEngine) -> None:
    await append(pg_engine, "test.headless")
    async with pg_engine.begin() as conn:
        await conn.execute(text("DELETE FROM audit_chain_head"))
    with pytest.raises(AuditChainCorrupt, match="missing"):
        await sealer(pg_engine).seal()
    assert await linked_ids(pg_engine) == []


async def test_a_sequence_with_a_per_session_cache_is_refused(pg_engine: AsyncEngine) -> None:
    # With a cache, a session could hand out an id below a horizon after it was taken.
    async with pg_engine.begin() as conn:
        await conn.execute(text("ALTER SEQUENCE audit_events_id_seq CACHE 20"))
    with pytest.raises(AuditChainCorrupt, match="CACHE 1"):
        await sealer(pg_engine).seal()


async def test_the_service_role_appends_and_seals(app_pg_url: str) -> None:
    engine = create_engine(app_pg_url, pool_size=2)
    try:
        first = await append(engine, "test.as_service")
        report = await sealer(engine).seal()
        assert (report.sealed, report.sealed_through, report.unsealed) == (1, first.id, 0)
        assert await verify_chain(engine) == VerifyResult(ok=True, records_checked=1)
    finally:
        await engine.dispose()


async def test_the_workers_periodic_job_seals_without_being_asked(pg_engine: AsyncEngine) -> None:
    job = PeriodicJob(SealAuditLog(SqlAuditSealer(pg_engine)), 0.05)
    await job.start()
    try:
        entry = await append(pg_engine, "test.background")
        for _ in range(100):
            if await linked_ids(pg_engine) == [entry.id]:
                break
            await asyncio.sleep(0.05)
        assert await linked_ids(pg_engine) == [entry.id]
    finally:
        await job.stop()
