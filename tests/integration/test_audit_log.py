"""The SQL audit log on both backends: append-only in the database itself, hash-chained,
serialised across concurrent writers, and verifiable end to end."""

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.storage import audit_log
from adapters.storage.audit_log import (
    AuditChainCorrupt,
    SqlAuditLog,
    SqlAuditReader,
    VerifyResult,
    verify_chain,
)
from adapters.storage.database import create_engine
from adapters.storage.unit_of_work import SqlUnitOfWork
from domain.audit import GENESIS_HASH, ActorKind, AuditEvent, AuditRecord, chain_hash


async def append(engine: AsyncEngine, action: str, **fields: object) -> AuditRecord:
    async with engine.begin() as conn:
        return await SqlAuditLog(conn).append(AuditEvent(action=action, **fields))  # type: ignore[arg-type]


async def append_many(engine: AsyncEngine, count: int) -> list[AuditRecord]:
    return [await append(engine, f"test.event{i}", details={"i": i}) for i in range(1, count + 1)]


async def read_all(engine: AsyncEngine, batch_size: int = 1000) -> list[AuditRecord]:
    return [record async for record in SqlAuditReader(engine).iterate(batch_size)]


async def tamper(engine: AsyncEngine, statement: str, **params: object) -> None:
    """Run `statement` around the append-only triggers, as a database superuser could."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
            await conn.execute(text(statement), params)
            await conn.execute(text("ALTER TABLE audit_events ENABLE TRIGGER USER"))
        else:
            triggers = (
                await conn.execute(
                    text(
                        "SELECT name, sql FROM sqlite_master WHERE type='trigger' AND tbl_name='audit_events'"
                    )
                )
            ).all()
            assert len(triggers) == 2
            for name, _ in triggers:
                await conn.execute(text(f'DROP TRIGGER "{name}"'))
            await conn.execute(text(statement), params)
            for _, sql in triggers:
                await conn.execute(text(sql))


async def assert_refused(engine: AsyncEngine, statement: str) -> None:
    with pytest.raises(DBAPIError, match="append-only"):
        async with engine.begin() as conn:
            await conn.execute(text(statement))


@pytest.fixture
async def pg_engine(fresh_pg_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(fresh_pg_url, pool_size=5)
    try:
        yield engine
    finally:
        await engine.dispose()


# --- the database refuses changes -------------------------------------------------------------


async def test_update_of_an_audit_entry_is_refused_by_the_database(engine: AsyncEngine) -> None:
    original = await append(engine, "user.login", details={"ok": True})
    await assert_refused(engine, "UPDATE audit_events SET action = 'forged' WHERE id = 1")
    await assert_refused(engine, "UPDATE audit_events SET details = '{\"ok\": false}'")
    assert await read_all(engine) == [original]


async def test_delete_of_an_audit_entry_is_refused_by_the_database(engine: AsyncEngine) -> None:
    originals = await append_many(engine, 2)
    await assert_refused(engine, "DELETE FROM audit_events WHERE id = 1")
    await assert_refused(engine, "DELETE FROM audit_events")
    assert await read_all(engine) == originals


async def test_truncate_of_the_audit_log_is_refused_on_postgres(pg_engine: AsyncEngine) -> None:
    originals = await append_many(pg_engine, 2)
    await assert_refused(pg_engine, "TRUNCATE audit_events")
    assert await read_all(pg_engine) == originals


async def test_triggers_are_back_after_a_tampering_helper_ran(engine: AsyncEngine) -> None:
    # Guards the other tests: tamper() must leave the protection in place.
    await append_many(engine, 1)
    await tamper(engine, "UPDATE audit_events SET target_id = 'x' WHERE id = 1")
    await assert_refused(engine, "UPDATE audit_events SET target_id = 'y' WHERE id = 1")
    await assert_refused(engine, "DELETE FROM audit_events WHERE id = 1")


# --- appends build a chain --------------------------------------------------------------------


async def test_appends_build_a_chain_that_verifies(engine: AsyncEngine) -> None:
    records = await append_many(engine, 5)
    assert [r.id for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    assert await verify_chain(engine) == VerifyResult(ok=True, records_checked=5)


async def test_empty_log_verifies(engine: AsyncEngine) -> None:
    assert await verify_chain(engine) == VerifyResult(ok=True, records_checked=0)


async def test_stored_entry_reloads_equal_and_hashes_identically(engine: AsyncEngine) -> None:
    actor, org, ref = uuid4(), uuid4(), uuid4()
    # A clock in another zone: the stored time must still render as UTC in the hash.
    local_now = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=timezone(timedelta(hours=2)))
    event = AuditEvent(
        action="broker.credential_added",
        actor_kind=ActorKind.USER,
        actor_user_id=actor,
        org_id=org,
        target_type="broker_credential",
        target_id=str(ref),
        source_ip="2001:db8::1",
        user_agent="Mozilla/5.0 (ünïcødé) ✓",
        request_id="req-1",
        # A non-string key on purpose: JSON turns it into "7", the hash must agree.
        details={"ref": ref, 7: "int key", "nested": {"list": [1, 2.5, None, True]}, "z": "é", "a": 0},  # type: ignore[dict-item]
    )
    async with engine.begin() as conn:
        appended = await SqlAuditLog(conn, clock=lambda: local_now).append(event)
    assert appended.occurred_at == local_now and appended.occurred_at.tzinfo is UTC
    assert appended.event.details["ref"] == str(ref)
    assert appended.event.details["7"] == "int key"

    (reloaded,) = await read_all(engine)
    assert reloaded == appended
    assert chain_hash(GENESIS_HASH, 1, reloaded.occurred_at, reloaded.event) == appended.hash
    assert (await verify_chain(engine)).ok


async def test_details_that_cannot_be_stored_faithfully_are_refused(engine: AsyncEngine) -> None:
    with pytest.raises(TypeError):
        await append(engine, "test.bad", details={"set": {1, 2}})
    assert await read_all(engine) == []


async def test_append_outside_a_transaction_is_refused(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        with pytest.raises(RuntimeError, match="transaction"):
            await SqlAuditLog(conn).append(AuditEvent(action="test.lost"))
    assert await read_all(engine) == []


async def test_append_in_an_autocommit_unit_is_refused(engine: AsyncEngine) -> None:
    # Its entry would commit on its own, apart from the change it records.
    async with SqlUnitOfWork(engine, autocommit=True) as uow:
        if engine.dialect.name == "postgresql":
            with pytest.raises(RuntimeError, match="transaction"):
                await uow.audit.append(AuditEvent(action="test.apart"))
        else:  # SQLite keeps its transaction in such a unit: the append waits for the commit
            await uow.audit.append(AuditEvent(action="test.apart"))
    assert await read_all(engine) == []


async def test_reader_pages_through_all_records_in_id_order(engine: AsyncEngine) -> None:
    records = await append_many(engine, 7)
    for batch_size in (1, 3, 7, 8):
        assert await read_all(engine, batch_size) == records
    assert await verify_chain(engine, batch_size=2) == VerifyResult(ok=True, records_checked=7)


# --- tampering is detected --------------------------------------------------------------------


async def test_changed_details_are_reported_at_that_entry(engine: AsyncEngine) -> None:
    await append_many(engine, 5)
    await tamper(engine, "UPDATE audit_events SET details = '{\"i\": 99}' WHERE id = 3")
    result = await verify_chain(engine, batch_size=2)
    assert not result.ok
    assert result.first_broken_id == 3
    assert result.records_checked == 3


async def test_changed_action_is_reported_at_that_entry(engine: AsyncEngine) -> None:
    await append_many(engine, 5)
    await tamper(engine, "UPDATE audit_events SET action = 'nothing.happened' WHERE id = 4")
    result = await verify_chain(engine)
    assert (result.ok, result.first_broken_id) == (False, 4)


async def test_deleted_middle_entry_is_detected(engine: AsyncEngine) -> None:
    await append_many(engine, 5)
    await tamper(engine, "DELETE FROM audit_events WHERE id = 3")
    result = await verify_chain(engine)
    assert not result.ok
    # Entry 4 is the first one that no longer follows from its predecessor.
    assert result.first_broken_id == 4
    assert result.reason is not None and "expected id 3" in result.reason


async def test_entries_cut_off_the_tail_are_detected(engine: AsyncEngine) -> None:
    await append_many(engine, 5)
    await tamper(engine, "DELETE FROM audit_events WHERE id >= 4")
    result = await verify_chain(engine)
    assert not result.ok
    assert result.first_broken_id == 4
    assert result.records_checked == 3


async def test_rewritten_last_entry_with_a_recomputed_hash_is_detected(engine: AsyncEngine) -> None:
    # Whoever rewrites the last entry and its hash still disagrees with the chain head.
    records = await append_many(engine, 3)
    forged = AuditEvent(action="test.event3", details={"i": 0})
    forged_hash = chain_hash(records[1].hash, 3, records[2].occurred_at, forged)
    await tamper(
        engine,
        "UPDATE audit_events SET details = '{\"i\": 0}', hash = :forged WHERE id = 3",
        forged=forged_hash,
    )
    result = await verify_chain(engine)
    assert (result.ok, result.first_broken_id) == (False, 3)


async def test_appends_running_during_verification_do_not_fail_it(engine: AsyncEngine) -> None:
    await append_many(engine, 3)
    reader = SqlAuditReader(engine)
    head = await reader.head()
    await append(engine, "test.later")
    assert head[0] == 3
    assert await verify_chain(engine) == VerifyResult(ok=True, records_checked=4)


# --- concurrency and transactions -------------------------------------------------------------


async def test_concurrent_appends_produce_gap_free_ids_and_an_unbroken_chain(engine: AsyncEngine) -> None:
    count = 20
    start = asyncio.Event()

    async def writer(n: int) -> AuditRecord:
        await start.wait()
        async with engine.begin() as conn:
            record = await SqlAuditLog(conn).append(AuditEvent(action=f"test.concurrent{n}"))
            # Hold the transaction open so the writers really overlap.
            await asyncio.sleep(0.01)
            return record

    tasks = [asyncio.create_task(writer(n)) for n in range(count)]
    await asyncio.sleep(0)
    start.set()
    appended = await asyncio.gather(*tasks)

    assert sorted(r.id for r in appended) == list(range(1, count + 1))
    stored = await read_all(engine)
    assert [r.id for r in stored] == list(range(1, count + 1))
    assert {r.event.action for r in stored} == {f"test.concurrent{n}" for n in range(count)}
    assert await verify_chain(engine) == VerifyResult(ok=True, records_checked=count)


async def test_rolled_back_append_leaves_no_entry_and_no_gap(engine: AsyncEngine) -> None:
    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with engine.begin() as conn:
            await SqlAuditLog(conn).append(AuditEvent(action="test.doomed"))
            raise Abort

    kept = await append(engine, "test.kept")
    assert (kept.id, kept.prev_hash) == (1, GENESIS_HASH)
    assert [r.event.action for r in await read_all(engine)] == ["test.kept"]
    assert await verify_chain(engine) == VerifyResult(ok=True, records_checked=1)


async def test_entry_commits_with_the_callers_other_writes(engine: AsyncEngine) -> None:
    async def in_one_transaction(conn: AsyncConnection) -> None:
        await SqlAuditLog(conn).append(AuditEvent(action="test.first"))
        await SqlAuditLog(conn).append(AuditEvent(action="test.second"))

    async with engine.begin() as conn:
        await in_one_transaction(conn)
    assert [r.id for r in await read_all(engine)] == [1, 2]
    assert (await verify_chain(engine)).ok


# --- PostgreSQL appends in one statement ------------------------------------------------------


async def test_an_append_waiting_for_the_head_chains_onto_the_entry_it_waited_for(
    pg_engine: AsyncEngine,
) -> None:
    # The lock, the id, the hash and the head's move are one statement: the second append reads
    # the head only once the first has committed, however the two overlap.
    async with pg_engine.connect() as first_conn:
        await first_conn.begin()
        first = await SqlAuditLog(first_conn).append(AuditEvent(action="test.first"))
        second_task = asyncio.create_task(append(pg_engine, "test.second"))
        await asyncio.sleep(0.2)
        assert not second_task.done()  # waiting on the head's row lock
        await first_conn.commit()
    second = await second_task
    assert (first.id, second.id) == (1, 2)
    assert second.prev_hash == first.hash
    assert await read_all(pg_engine) == [first, second]
    assert await verify_chain(pg_engine) == VerifyResult(ok=True, records_checked=2)


async def test_an_append_waiting_on_one_that_rolls_back_takes_its_place(pg_engine: AsyncEngine) -> None:
    async with pg_engine.connect() as first_conn:
        await first_conn.begin()
        await SqlAuditLog(first_conn).append(AuditEvent(action="test.doomed"))
        second_task = asyncio.create_task(append(pg_engine, "test.second"))
        await asyncio.sleep(0.2)
        assert not second_task.done()
        await first_conn.rollback()
    second = await second_task
    assert (second.id, second.prev_hash) == (1, GENESIS_HASH)
    assert await read_all(pg_engine) == [second]
    assert await verify_chain(pg_engine) == VerifyResult(ok=True, records_checked=1)


async def test_an_entry_the_database_hashed_differently_is_refused_and_rolled_back(
    pg_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = await append(pg_engine, "test.kept")

    rendered = audit_log.canonical_payload_around_id

    def drifted(occurred_at: datetime, event: AuditEvent) -> tuple[bytes, bytes]:
        before, after = rendered(occurred_at, event)
        return before.replace(b'"action"', b'"Action"'), after

    monkeypatch.setattr(audit_log, "canonical_payload_around_id", drifted)
    with pytest.raises(AuditChainCorrupt, match="hashed the entry differently"):
        await append(pg_engine, "test.drifted")
    assert await read_all(pg_engine) == [kept]
    assert await SqlAuditReader(pg_engine).head() == (1, kept.hash)


async def test_a_missing_head_refuses_the_append_on_postgres(pg_engine: AsyncEngine) -> None:
    async with pg_engine.begin() as conn:
        await conn.execute(text("DELETE FROM audit_chain_head"))
    with pytest.raises(AuditChainCorrupt, match="missing"):
        await append(pg_engine, "test.headless")
    assert await read_all(pg_engine) == []
