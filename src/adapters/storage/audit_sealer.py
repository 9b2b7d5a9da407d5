"""The sealer: chains committed audit entries in id order, after the fact, so that no writer waits
for a chain lock (PostgreSQL; SQLite seals inline and this only reports).

Writers take ids from a sequence and commit in any order: id 41 may commit after id 42, or never
(rolled back). Sealing 42 before 41 commits would leave 41 outside the chain for good, so the
sealer seals only a prefix it knows is complete. A *horizon* is taken in two statements:

1. H = the sequence's last value (CACHE 1: every id up to H has been handed out, none later);
2. then, from pg_locks, the transactions holding audit_events (or one of its partitions) open for
   writing (RowExclusiveLock).

A writer locks the table it inserts into (its month's partition, or the parent for a batch) before
its INSERT evaluates nextval (the lock is taken when the statement is parsed or its plan reused,
before it runs) and keeps the lock until its transaction ends. So whoever holds an id <= H held
that lock before step 1 and is either finished or listed by step 2. Once none of the listed
transactions is left, every id <= H has committed or aborted for good: the entries up to H are
complete and are chained. Only writers of this database's audit log count (not readers, not other
databases' transactions). One that stays open (a slow request, an idle session in a transaction)
holds the horizon back, never the writers; the unsealed tail is reported until it ends.

Several processes may run the sealer: sealing takes the chain head's row lock (SKIP LOCKED: the
one that has it seals, the others skip the round); a horizon is a fact about the database, valid
whichever process observed it. Each seal is logged (id and hash) so that the log carries a copy of
the checkpoints outside the database."""

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.storage.audit_log import HEAD_ID, ID_SEQUENCE, AuditChainCorrupt, row_to_record
from adapters.storage.tables import audit_chain_head, audit_events
from application.ports.audit import SealReport
from domain.audit import chain_hash

log = logging.getLogger("bulwark.audit")
MAX_PENDING = 32

# The sequence's last value, and its cache size (a per-session cache would make H meaningless).
_LAST_ID = text(
    "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END, "
    "(SELECT seqcache FROM pg_sequence WHERE seqrelid = 'audit_events_id_seq'::regclass) "
    "FROM audit_events_id_seq"
)
# Writers of the log's table or of one of its partitions (an INSERT straight into a partition locks
# only that one), in this database. One read of pg_locks per round: it copies the lock table.
_WRITERS = text(
    "SELECT coalesce(array_agg(DISTINCT virtualtransaction), '{}') FROM pg_locks "
    "WHERE locktype = 'relation' AND mode = 'RowExclusiveLock' "
    "AND relation IN (SELECT 'public.audit_events'::regclass UNION ALL "
    "SELECT inhrelid FROM pg_inherits WHERE inhparent = 'public.audit_events'::regclass) "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
# One statement for a batch's links (not one per link): the sealer's share of the database's work
# is what an audited write pays for over a plain one.
_INSERT_LINKS = text(
    "INSERT INTO audit_chain_links (id, prev_hash, hash) SELECT * FROM unnest("
    "CAST(:ids AS bigint[]), CAST(:prevs AS varchar[]), CAST(:hashes AS varchar[]))"
)
_LOCK_HEAD = (
    select(audit_chain_head.c.last_id, audit_chain_head.c.last_hash)
    .where(audit_chain_head.c.id == HEAD_ID)
    .with_for_update(skip_locked=True)
)
_HEAD = select(audit_chain_head.c.last_id).where(audit_chain_head.c.id == HEAD_ID)
_MOVE_HEAD = (
    update(audit_chain_head)
    .where(audit_chain_head.c.id == HEAD_ID, audit_chain_head.c.last_id == bindparam("prev_id"))
    .values(last_id=bindparam("next_id"), last_hash=bindparam("next_hash"))
)


@dataclass(frozen=True)
class Horizon:
    last_id: int  # every id up to this one was handed out before `writers` were listed
    writers: frozenset[str]  # virtual transaction ids writing to audit_events then


class SqlAuditSealer:
    """`wait_seconds`: how long one call may wait for the horizon it takes to complete. 0 (each
    worker's periodic job): a round seals through the newest horizon of an earlier round whose
    writers have all ended, so an entry is sealed a round or two after its commit, and a round
    costs two short reads. A wait (verification, `bulwark jobs run`) seals what had committed when
    it was called, re-reading the writers every `poll_seconds` meanwhile."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        batch_size: int = 2000,
        wait_seconds: float = 0.0,
        poll_seconds: float = 0.02,
    ) -> None:
        self._engine = engine
        self._batch_size = batch_size
        self._wait = wait_seconds
        self._poll = poll_seconds
        self._pending: list[Horizon] = []  # oldest first; a later one supersedes the earlier

    async def seal(self) -> SealReport:
        if self._engine.dialect.name != "postgresql":
            return await self._report(0)  # SQLite appends seal themselves, under the write lock
        async with self._engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            # In this order: the ids handed out, then who may still be writing one of them.
            last_id = await self._last_id(conn)
            writers = await self._writers(conn)
            newest = Horizon(last_id, writers)
            self._pending.append(newest)
            # Behind a transaction that never ends, keep the newest few: a newer horizon completes
            # no earlier than an older one, so dropping the oldest only ever delays a seal.
            del self._pending[:-MAX_PENDING]
            complete = self._newest_complete(set(writers))
            deadline = time.monotonic() + self._wait
            while complete is not newest and newest in self._pending and time.monotonic() < deadline:
                await asyncio.sleep(self._poll)
                complete = self._newest_complete(set(await self._writers(conn))) or complete
        sealed = await self._seal_through(complete.last_id) if complete is not None else 0
        return await self._report(sealed)

    @staticmethod
    async def _last_id(conn: AsyncConnection) -> int:
        last_id, cache = (await conn.execute(_LAST_ID)).one()
        # With a per-session cache, a session could hand out an id below H after H was read.
        # Checked every round: an ALTER SEQUENCE made while the service runs stops the sealer.
        if cache != 1:
            raise AuditChainCorrupt(f"{ID_SEQUENCE} must have CACHE 1 for the sealer to be sound")
        return int(last_id)

    @staticmethod
    async def _writers(conn: AsyncConnection) -> frozenset[str]:
        return frozenset(str(vxid) for vxid in (await conn.execute(_WRITERS)).scalar_one())

    def _newest_complete(self, writing_now: set[str]) -> Horizon | None:
        """The newest pending horizon none of whose writers is still writing (a transaction keeps
        its lock until it ends, so one missing from `writing_now` has ended); it and every older
        one leave the list. No await inside: concurrent calls on one sealer see a consistent list."""
        for index in range(len(self._pending) - 1, -1, -1):
            if not self._pending[index].writers & writing_now:
                chosen = self._pending[index]
                del self._pending[: index + 1]
                return chosen
        return None

    async def _seal_through(self, last_id: int) -> int:
        """Chains every entry with an id up to `last_id`, in batches of one transaction each."""
        sealed = 0
        while True:
            async with self._engine.begin() as conn:
                head = (await conn.execute(_LOCK_HEAD)).one_or_none()
                if head is None:
                    if (await conn.execute(_HEAD)).one_or_none() is None:
                        raise AuditChainCorrupt("audit_chain_head row is missing")
                    return sealed  # another process is sealing right now
                prev_id, prev_hash = int(head.last_id), str(head.last_hash)
                if prev_id >= last_id:
                    return sealed
                rows = (
                    (
                        await conn.execute(
                            select(audit_events)
                            .where(audit_events.c.id > prev_id, audit_events.c.id <= last_id)
                            .order_by(audit_events.c.id)
                            .limit(self._batch_size)
                        )
                    )
                    .mappings()
                    .all()
                )
                if not rows:
                    return sealed
                links: list[dict[str, Any]] = []
                digest = prev_hash
                for row in rows:
                    record = row_to_record(row)
                    link_prev, digest = (
                        digest,
                        chain_hash(digest, record.id, record.occurred_at, record.event),
                    )
                    links.append({"id": record.id, "prev_hash": link_prev, "hash": digest})
                await conn.execute(
                    _INSERT_LINKS,
                    {
                        "ids": [link["id"] for link in links],
                        "prevs": [link["prev_hash"] for link in links],
                        "hashes": [link["hash"] for link in links],
                    },
                )
                moved = await conn.execute(
                    _MOVE_HEAD, {"prev_id": prev_id, "next_id": links[-1]["id"], "next_hash": digest}
                )
                if moved.rowcount != 1:
                    raise AuditChainCorrupt("audit chain head moved while sealing")
            sealed += len(links)
            log.info(
                "audit log sealed through entry %s, hash %s (%s entries)", links[-1]["id"], digest, len(links)
            )
            if len(rows) < self._batch_size:
                return sealed

    async def _report(self, sealed: int) -> SealReport:
        async with self._engine.connect() as conn:
            head_id = int((await conn.execute(_HEAD)).scalar_one())
            unsealed = (
                await conn.execute(
                    select(func.count()).select_from(audit_events).where(audit_events.c.id > head_id)
                )
            ).scalar_one()
        return SealReport(sealed=sealed, sealed_through=head_id, unsealed=int(unsealed))
