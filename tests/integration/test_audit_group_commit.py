"""Group-committed audit entries (the vault's accesses): many callers' entries in one
transaction, chained like any other, each caller released only once its entry is committed."""

import asyncio

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.audit_group_commit import GroupCommitAuditJournal
from adapters.storage.audit_sealer import SqlAuditSealer
from adapters.storage.audit_verification import verify_chain
from adapters.storage.tables import audit_events
from adapters.storage.unit_of_work import SqlUnitOfWork
from domain.audit import ActorKind, AuditEvent


def event(n: int) -> AuditEvent:
    return AuditEvent(action="broker_credentials.accessed", actor_kind=ActorKind.SERVICE, details={"n": n})


async def count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(audit_events))).scalar_one())


async def test_concurrent_records_are_chained_and_committed_before_their_callers_return(
    engine: AsyncEngine,
) -> None:
    journal = GroupCommitAuditJournal(engine)
    committed_when_returned: list[bool] = []

    async def record(n: int) -> None:
        await journal.record(event(n))
        async with engine.connect() as conn:
            rows = await conn.execute(select(audit_events.c.details))
            committed_when_returned.append(any(r.details.get("n") == n for r in rows))

    async def ordinary(n: int) -> None:
        async with SqlUnitOfWork(engine) as uow:
            await uow.audit.append(AuditEvent(action="other.write", details={"m": n}))
            await uow.commit()

    await asyncio.gather(*(record(n) for n in range(120)), *(ordinary(n) for n in range(10)))
    assert all(committed_when_returned) and len(committed_when_returned) == 120
    assert await count(engine) == 130
    await SqlAuditSealer(engine, wait_seconds=2.0).seal()
    result = await verify_chain(engine)
    assert result.ok and result.records_checked == 130, result


async def test_a_failed_batch_fails_its_callers_and_leaves_the_chain_intact(engine: AsyncEngine) -> None:
    journal = GroupCommitAuditJournal(engine)
    await journal.record(event(1))
    bad = AuditEvent(action="broken", details={"not json": object()})  # the batch cannot be written
    outcomes = await asyncio.gather(journal.record(bad), journal.record(event(2)), return_exceptions=True)
    assert any(isinstance(o, Exception) for o in outcomes)
    await journal.record(event(3))
    await SqlAuditSealer(engine, wait_seconds=2.0).seal()
    result = await verify_chain(engine)
    # Entries 1 and 3; entry 2 shared the failed batch and its caller was told so.
    assert result.ok and result.records_checked == 2 and result.unsealed == 0, result
