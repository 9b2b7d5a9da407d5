"""The SQL audit log on both backends: append-only in the database itself, hash-chained (inline
on SQLite, by the sealer on PostgreSQL), and verifiable end to end with the first broken link
named."""

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.storage.audit_log import SqlAuditLog
from adapters.storage.audit_sealer import SqlAuditSealer
from adapters.storage.audit_verification import SqlAuditReader, VerifyResult, verify_chain
from adapters.storage.database import create_engine
from adapters.storage.unit_of_work import SqlUnitOfWork
from application.ports.audit import SealReport
from domain.audit import GENESIS_HASH, ActorKind, AuditEvent, AuditRecord, chain_hash

PROTECTED = ("audit_events", "audit_chain_links", "audit_archives")


async def append(engine: AsyncEngine, action: str, **fields: object) -> AuditRecord:
    async with engine.begin() as conn:
        return await SqlAuditLog(conn).append(AuditEvent(action=action, **fields))  # type: ignore[arg-type]


async def seal(engine: AsyncEngine) -> SealReport:
    return await SqlAuditSealer(engine, wait_seconds=2.0).seal()


async def append_many(engine: AsyncEngine, count: int) -> list[AuditRecord]:
    """`count` entries, sealed, as read back (with their links)."""
    for i in range(1, count + 1):
        await append(engine, f"test.event{i}", details={"i": i})
    await seal(engine)
    return await read_all(engine)


async def read_all(engine: AsyncEngine, batch_size: int = 1000) -> list[AuditRecord]:
    return [record async for record in SqlAuditReader(engine).iterate(batch_size)]


async def tamper(engine: AsyncEngine, statement: str, **params: object) -> None:
    """Run `statement` around the append-only triggers, as a database superuser could."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for table in PROTECTED:
                await conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            await conn.execute(text(statement), params)
            for table in PROTECTED:
                await conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
        else:
            triggers = (
                await conn.execute(
                    text(
                        "SELECT name, sql FROM sqlite_master WHERE type='trigger' AND tbl_name IN "
                        "('audit_events', 'audit_chain_links', 'audit_archives')"
                    )
                )
            ).all()
            assert len(triggers) == 6
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
    local_now = datetime.now(timezone(timedelta(hours=2))).replace(microsecond=123456)
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

    await seal(engine)
    (reloaded,) = await read_all(engine)
    assert (reloaded.id, reloaded.occurred_at, reloaded.event) == (
        appended.id,
        appended.occurred_at,
        appended.event,
    )
    assert reloaded.prev_hash == GENESIS_HASH
    assert chain_hash(GENESIS_HASH, 1, appended.occurred_at, appended.event) == reloaded.hash
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
    # Its link stays: the entry is named as sealed and missing.
    assert result.first_broken_id == 3
    assert result.reason is not None and "missing" in result.reason


async def test_deleted_middle_entry_and_its_link_are_detected_at_the_next_entry(engine: AsyncEngine) -> None:
    await append_many(engine, 5)
    await tamper(engine, "DELETE FROM audit_events WHERE id = 3")
    await tamper(engine, "DELETE FROM audit_chain_links WHERE id = 3")
    result = await verify_chain(engine)
    assert (result.ok, result.first_broken_id) == (False, 4)
    assert result.reason is not None and "prev_hash" in result.reason


async def test_entries_cut_off_the_tail_are_detected(engine: AsyncEngine) -> None:
    await append_many(engine, 5)
    await tamper(engine, "DELETE FROM audit_events WHERE id >= 4")
    result = await verify_chain(engine)
    assert not result.ok
    assert result.first_broken_id == 4
    assert result.records_checked == 3
    await tamper(engine, "DELETE FROM audit_chain_links WHERE id >= 4")
    result = await verify_chain(engine)
    assert (result.ok, result.first_broken_id) == (False, 4)
    assert result.reason is not None and "head records id 5" in result.reason


async def test_rewritten_last_entry_with_a_recomputed_hash_is_detected(engine: AsyncEngine) -> None:
    # Whoever rewrites the last entry and its link's hash still disagrees with the chain head.
    records = await append_many(engine, 3)
    forged = AuditEvent(action="test.event3", details={"i": 0})
    forged_hash = chain_hash(str(records[1].hash), 3, records[2].occurred_at, forged)
    await tamper(engine, "UPDATE audit_events SET details = '{\"i\": 0}' WHERE id = 3")
    await tamper(engine, "UPDATE audit_chain_links SET hash = :forged WHERE id = 3", forged=forged_hash)
    result = await verify_chain(engine)
    assert (result.ok, result.first_broken_id) == (False, 3)


async def test_a_row_forged_into_the_sealed_range_is_named(engine: AsyncEngine) -> None:
    """Privileged database access inserts an entry among sealed ones (INSERT is never refused):
    it has no link, or collides with one, and verification names it."""
    records = await append_many(engine, 4)
    forged_at = records[2].occurred_at + timedelta(microseconds=1)  # (id, occurred_at) is the key
    await tamper(
        engine,
        "INSERT INTO audit_events (id, occurred_at, actor_kind, action, details) "
        "VALUES (3, :at, 'system', 'test.forged', '{}')",
        at=forged_at if engine.dialect.name == "postgresql" else forged_at.replace(tzinfo=None),
    )
    result = await verify_chain(engine)
    assert (result.ok, result.first_broken_id) == (False, 3), result


async def test_appends_running_during_verification_do_not_fail_it(engine: AsyncEngine) -> None:
    await append_many(engine, 3)
    reader = SqlAuditReader(engine)
    head = await reader.head()
    await append(engine, "test.later")
    assert head[0] == 3
    result = await verify_chain(engine)
    if engine.dialect.name == "postgresql":  # sealed a moment later, reported meanwhile
        assert result == VerifyResult(ok=True, records_checked=3, unsealed=1)
        await seal(engine)
    assert await verify_chain(engine) == VerifyResult(ok=True, records_checked=4)


# --- concurrency and transactions -------------------------------------------------------------


async def test_concurrent_appends_produce_unique_ids_and_an_unbroken_chain(engine: AsyncEngine) -> None:
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
    await seal(engine)
    stored = await read_all(engine)
    assert [r.id for r in stored] == list(range(1, count + 1))
    assert {r.event.action for r in stored} == {f"test.concurrent{n}" for n in range(count)}
    assert await verify_chain(engine) == VerifyResult(ok=True, records_checked=count)


async def test_rolled_back_append_leaves_no_entry(engine: AsyncEngine) -> None:
    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with engine.begin() as conn:
            await SqlAuditLog(conn).append(AuditEvent(action="test.doomed"))
            raise Abort

    kept = await append(engine, "test.kept")
    # SQLite reuses the id; a PostgreSQL sequence never hands it out again (the chain skips it).
    assert kept.id == (2 if engine.dialect.name == "postgresql" else 1)
    await seal(engine)
    assert [(r.event.action, r.prev_hash) for r in await read_all(engine)] == [("test.kept", GENESIS_HASH)]
    assert await verify_chain(engine) == VerifyResult(ok=True, records_checked=1)


async def test_entry_commits_with_the_callers_other_writes(engine: AsyncEngine) -> None:
    async def in_one_transaction(conn: AsyncConnection) -> None:
        await SqlAuditLog(conn).append(AuditEvent(action="test.first"))
        await SqlAuditLog(conn).append(AuditEvent(action="test.second"))

    async with engine.begin() as conn:
        await in_one_transaction(conn)
    await seal(engine)
    assert [r.id for r in await read_all(engine)] == [1, 2]
    assert (await verify_chain(engine)).ok
