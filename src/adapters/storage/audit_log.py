"""The append-only, hash-chained audit log in SQL.

Appends are serialised on the single `audit_chain_head` row (PostgreSQL: SELECT ... FOR UPDATE;
SQLite: every transaction already starts with BEGIN IMMEDIATE), so ids are gap-free and each
entry's prev_hash is the hash of the entry before it. The database refuses UPDATE/DELETE (and
TRUNCATE on PostgreSQL) on `audit_events` by trigger; the chain makes edits made around the
triggers visible to `verify_chain`."""

import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import LargeBinary, RowMapping, Text, bindparam, cast, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.storage.tables import audit_chain_head, audit_events
from application.ports.audit import ChainCheck
from domain.audit import (
    GENESIS_HASH,
    ActorKind,
    AuditEvent,
    AuditRecord,
    ChainVerifier,
    canonical_payload_around_id,
    chain_hash,
    normalise_details,
    normalise_time,
)

HEAD_ID = 1

# Built once: every audited action runs these, and building a statement costs more than running it.
_LOCK_HEAD = (
    select(audit_chain_head.c.last_id, audit_chain_head.c.last_hash)
    .where(audit_chain_head.c.id == HEAD_ID)
    .with_for_update()  # rendered on PostgreSQL; SQLite already holds the write lock
)
_INSERT_EVENT = audit_events.insert().values(
    {column: bindparam(f"e_{column.name}", type_=column.type) for column in audit_events.c}
)
_ADVANCE_HEAD = (
    update(audit_chain_head)
    .where(audit_chain_head.c.id == HEAD_ID, audit_chain_head.c.last_id == bindparam("prev_id"))
    .values(last_id=bindparam("next_id"), last_hash=bindparam("next_hash"))
)
# PostgreSQL: one statement takes the head's lock, appends the entry after it and moves the head,
# so an append is one round trip. The database assigns the id (the head's + 1) and hashes the
# entry: sha256(prev_hash || before || id || after), where before/after are the canonical payload
# rendered around the id in Python (domain.audit.canonical_payload_around_id). A concurrent
# append waits on the head's row lock and then reads the head it left (READ COMMITTED re-reads a
# locked row's latest version), as the separate SELECT ... FOR UPDATE did. The entry's time is
# taken before the statement, so under contention an entry may carry a time before its
# predecessor's, by up to the time it waited for the lock (as entries from two hosts' clocks
# always could): ids give the order, and nothing here reads time order into them.
_HEAD = _LOCK_HEAD.cte("head")
_NEXT_ID = _HEAD.c.last_id + 1
_CHAIN_HASH_IN_SQL = func.encode(
    func.sha256(
        func.convert_to(_HEAD.c.last_hash, "UTF8")
        .op("||")(bindparam("before", type_=LargeBinary))
        .op("||")(func.convert_to(cast(_NEXT_ID, Text), "UTF8"))
        .op("||")(bindparam("after", type_=LargeBinary))
    ),
    "hex",
)
_ASSIGNED = {"id": _NEXT_ID, "prev_hash": _HEAD.c.last_hash, "hash": _CHAIN_HASH_IN_SQL}
_APPENDED = (
    audit_events.insert()
    .from_select(
        [column.name for column in audit_events.c],
        select(
            *(
                _ASSIGNED[column.name].label(column.name)
                if column.name in _ASSIGNED
                else bindparam(f"e_{column.name}", type_=column.type)
                for column in audit_events.c
            )
        ),
    )
    .returning(audit_events.c.id, audit_events.c.prev_hash, audit_events.c.hash)
    .cte("appended")
)
_APPEND_ON_POSTGRESQL = (
    update(audit_chain_head)
    # The second condition always holds (the head only moves forward) and joins the two: on a
    # row another append moved meanwhile, READ COMMITTED re-checks both against its latest
    # version. A condition tying the head to the id read (last_id = id - 1) would be tested
    # against this statement's snapshot, from before the lock wait, and match nothing.
    .where(audit_chain_head.c.id == HEAD_ID, audit_chain_head.c.last_id < _APPENDED.c.id)
    .values(last_id=_APPENDED.c.id, last_hash=_APPENDED.c.hash)
    .returning(_APPENDED.c.id, _APPENDED.c.prev_hash, _APPENDED.c.hash)
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AuditChainCorrupt(RuntimeError):
    """The chain head is missing or moved under us: appending would fork the chain."""


class SqlAuditLog:
    """AuditSink on the caller's connection; the entry commits or rolls back with the caller's
    transaction, so a failed operation leaves neither an entry nor a gap in the ids."""

    def __init__(
        self,
        connection: AsyncConnection,
        clock: Callable[[], datetime] = _utc_now,
        *,
        in_transaction: bool = True,
    ) -> None:
        self._connection = connection
        self._clock = clock
        # False for an autocommit unit: the head's lock would end with the statement and the
        # entry would commit apart from the change it records.
        self._in_transaction = in_transaction

    async def append(self, event: AuditEvent) -> AuditRecord:
        conn = self._connection
        if not self._in_transaction:
            raise RuntimeError("SqlAuditLog.append needs a unit of work with a transaction (not autocommit)")
        if not conn.in_transaction():
            # Autobegin would open a transaction nobody commits: the entry would vanish.
            raise RuntimeError("SqlAuditLog.append needs the caller's open transaction")
        # Normalise first so the hash is computed over exactly what the database gives back.
        event = dataclasses.replace(
            event, actor_kind=ActorKind(event.actor_kind), details=normalise_details(event.details)
        )
        occurred_at = normalise_time(self._clock())
        fields = self._fields(event, occurred_at)
        if conn.dialect.name == "postgresql":
            return await self._append_in_one_statement(conn, occurred_at, event, fields)
        head = (await conn.execute(_LOCK_HEAD)).one_or_none()
        if head is None:
            raise AuditChainCorrupt("audit_chain_head row is missing")
        prev_id, prev_hash = int(head.last_id), str(head.last_hash)
        seq = prev_id + 1
        digest = chain_hash(prev_hash, seq, occurred_at, event)
        entry = fields | {"id": seq, "prev_hash": prev_hash, "hash": digest}
        await conn.execute(_INSERT_EVENT, {f"e_{name}": value for name, value in entry.items()})
        moved = await conn.execute(_ADVANCE_HEAD, {"prev_id": prev_id, "next_id": seq, "next_hash": digest})
        if moved.rowcount != 1:
            # Only possible if the lock was not held (e.g. a misconfigured SQLite begin).
            raise AuditChainCorrupt("audit chain head moved during append")
        return AuditRecord(id=seq, occurred_at=occurred_at, event=event, prev_hash=prev_hash, hash=digest)

    async def append_many(self, events: list[AuditEvent]) -> list[AuditRecord]:
        """Several entries under one hold of the chain's lock: the head is read once, the entries
        are chained in Python and inserted together, the head moves once."""
        conn = self._connection
        if not self._in_transaction or not conn.in_transaction():
            raise RuntimeError("SqlAuditLog.append_many needs the caller's open transaction")
        head = (await conn.execute(_LOCK_HEAD)).one_or_none()
        if head is None:
            raise AuditChainCorrupt("audit_chain_head row is missing")
        first_id, prev_hash = int(head.last_id), str(head.last_hash)
        records: list[AuditRecord] = []
        rows: list[dict[str, Any]] = []
        for offset, raw in enumerate(events, start=1):
            event = dataclasses.replace(
                raw, actor_kind=ActorKind(raw.actor_kind), details=normalise_details(raw.details)
            )
            occurred_at = normalise_time(self._clock())
            seq = first_id + offset
            digest = chain_hash(prev_hash, seq, occurred_at, event)
            rows.append(
                {f"e_{name}": value for name, value in self._fields(event, occurred_at).items()}
                | {"e_id": seq, "e_prev_hash": prev_hash, "e_hash": digest}
            )
            records.append(
                AuditRecord(id=seq, occurred_at=occurred_at, event=event, prev_hash=prev_hash, hash=digest)
            )
            prev_hash = digest
        if not rows:
            return []
        await conn.execute(_INSERT_EVENT, rows)
        moved = await conn.execute(
            _ADVANCE_HEAD, {"prev_id": first_id, "next_id": records[-1].id, "next_hash": records[-1].hash}
        )
        if moved.rowcount != 1:
            raise AuditChainCorrupt("audit chain head moved during append")
        return records

    @staticmethod
    def _fields(event: AuditEvent, occurred_at: datetime) -> dict[str, Any]:
        return {
            "occurred_at": occurred_at,
            "actor_user_id": event.actor_user_id,
            "actor_kind": str(event.actor_kind),
            "org_id": event.org_id,
            "action": event.action,
            "target_type": event.target_type,
            "target_id": event.target_id,
            "source_ip": event.source_ip,
            "user_agent": event.user_agent,
            "request_id": event.request_id,
            "details": event.details,
        }

    @staticmethod
    async def _append_in_one_statement(
        conn: AsyncConnection, occurred_at: datetime, event: AuditEvent, fields: dict[str, Any]
    ) -> AuditRecord:
        before, after = canonical_payload_around_id(occurred_at, event)
        params = {f"e_{name}": value for name, value in fields.items()} | {"before": before, "after": after}
        appended = (await conn.execute(_APPEND_ON_POSTGRESQL, params)).one_or_none()
        if appended is None:
            raise AuditChainCorrupt("audit_chain_head row is missing")
        seq, prev_hash, digest = int(appended.id), str(appended.prev_hash), str(appended.hash)
        # The database hashed what Python would have: checked here, so that a difference (a
        # server setting that renders text otherwise, say) fails this append, rolled back with
        # the caller's change, rather than writing an entry that verification rejects.
        if digest != chain_hash(prev_hash, seq, occurred_at, event):
            raise AuditChainCorrupt("the database hashed the entry differently from the chain's rule")
        return AuditRecord(id=seq, occurred_at=occurred_at, event=event, prev_hash=prev_hash, hash=digest)


def row_to_record(row: RowMapping) -> AuditRecord:
    details: Any = row["details"]
    return AuditRecord(
        id=int(row["id"]),
        occurred_at=row["occurred_at"],
        event=AuditEvent(
            action=row["action"],
            actor_kind=ActorKind(row["actor_kind"]),
            actor_user_id=row["actor_user_id"],
            org_id=row["org_id"],
            target_type=row["target_type"],
            target_id=row["target_id"],
            source_ip=row["source_ip"],
            user_agent=row["user_agent"],
            request_id=row["request_id"],
            details=details,
        ),
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


class SqlAuditReader:
    """AuditReader: records in id order, fetched in keyset-paginated batches.

    Each batch uses its own short transaction (on SQLite every transaction takes the write
    lock, so one long read would stall all writers). Entries are immutable once committed, so
    batches taken at different times still form one consistent prefix of the chain."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def iterate(
        self, batch_size: int = 1000, *, after_id: int = 0, up_to_id: int | None = None
    ) -> AsyncIterator[AuditRecord]:
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        last_seen = after_id
        while True:
            query = (
                select(audit_events)
                .where(audit_events.c.id > last_seen)
                .order_by(audit_events.c.id)
                .limit(batch_size)
            )
            if up_to_id is not None:
                query = query.where(audit_events.c.id <= up_to_id)
            # Fetch the whole batch and release the connection before yielding, so a consumer
            # that stops early does not keep a connection (or SQLite's lock) checked out.
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query)).mappings().all()
            for row in rows:
                yield row_to_record(row)
            if len(rows) < batch_size:
                return
            last_seen = int(rows[-1]["id"])

    async def head(self) -> tuple[int, str]:
        """(last_id, last_hash) as committed by the last append."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(audit_chain_head.c.last_id, audit_chain_head.c.last_hash).where(
                        audit_chain_head.c.id == HEAD_ID
                    )
                )
            ).one_or_none()
        if row is None:
            raise AuditChainCorrupt("audit_chain_head row is missing")
        return int(row.last_id), str(row.last_hash)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records_checked: int
    first_broken_id: int | None = None
    reason: str | None = None


async def verify_chain(engine: AsyncEngine, batch_size: int = 1000) -> VerifyResult:
    """Re-derive every hash from genesis up to the committed head (`bulwark audit verify`).

    The head is read first: entries up to it are committed and immutable, so appends running
    concurrently with the verification (ids beyond the head) neither disturb nor fail it. The
    last entry must then be the one the head names, which catches entries cut off the tail."""
    reader = SqlAuditReader(engine)
    head_id, head_hash = await reader.head()
    verifier = ChainVerifier(GENESIS_HASH, 0)
    async for record in reader.iterate(batch_size, up_to_id=head_id):
        if not verifier.feed(record):
            return VerifyResult(False, verifier.checked, verifier.broken_at, verifier.reason)
    if verifier.last_id != head_id:
        return VerifyResult(
            False,
            verifier.checked,
            verifier.last_id + 1,
            f"chain ends at id {verifier.last_id} but the head records id {head_id}",
        )
    if verifier.last_hash != head_hash:
        return VerifyResult(
            False,
            verifier.checked,
            head_id,
            "the last entry's hash differs from the one recorded in the head",
        )
    return VerifyResult(True, verifier.checked)


class SqlAuditChainVerifier:
    """AuditChainVerifier over `verify_chain`, for the admin panel's `POST /audit/verify`."""

    def __init__(self, engine: AsyncEngine, batch_size: int = 1000) -> None:
        self._engine = engine
        self._batch_size = batch_size

    async def verify(self) -> ChainCheck:
        result = await verify_chain(self._engine, self._batch_size)
        return ChainCheck(result.ok, result.records_checked, result.first_broken_id, result.reason)
