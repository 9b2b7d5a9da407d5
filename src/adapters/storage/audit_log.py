"""Appending to the append-only, hash-chained audit log in SQL.

PostgreSQL: an append is one INSERT into its month's partition with no lock beyond its own row
(and the table's shared RowExclusiveLock, which the sealer reads to know who may still commit an
id). The id comes from
`audit_events_id_seq` (CACHE 1); the entry gets its chain link later, from the sealer
(adapters/storage/audit_sealer.py), which chains committed entries in id order.

SQLite: every transaction already holds the database's write lock (BEGIN IMMEDIATE), so an append
seals itself inline: the id follows the chain head, the link is written with the entry and the
head moves, all in the caller's transaction.

Either way the database refuses UPDATE/DELETE (and TRUNCATE on PostgreSQL) on the entries and
their links by trigger; the chain makes edits made around the triggers visible to verification."""

import dataclasses
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Insert, MetaData, Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.storage.tables import audit_chain_head, audit_chain_links, audit_events
from domain.audit import ActorKind, AuditEvent, AuditRecord, chain_hash, normalise_details, normalise_time

HEAD_ID = 1
ID_SEQUENCE = "audit_events_id_seq"

# Built once: every audited action runs these, and building a statement costs more than running it.
_LOCK_HEAD = (
    select(audit_chain_head.c.last_id, audit_chain_head.c.last_hash)
    .where(audit_chain_head.c.id == HEAD_ID)
    .with_for_update()  # rendered on PostgreSQL; SQLite already holds the write lock
)
_INSERT_EVENT = audit_events.insert().values(
    {column: bindparam(f"e_{column.name}", type_=column.type) for column in audit_events.c}
)
_INSERT_LINK = audit_chain_links.insert()
_ADVANCE_HEAD = (
    update(audit_chain_head)
    .where(audit_chain_head.c.id == HEAD_ID, audit_chain_head.c.last_id == bindparam("prev_id"))
    .values(last_id=bindparam("next_id"), last_hash=bindparam("next_hash"))
)
# PostgreSQL, one round trip: the id from the sequence, the entry as it is; no chain lock. The row
# goes straight into its month's partition (audit_events_yYYYYmMM, made ahead by the partitions
# job): routing through the parent costs the database a partition lookup and set-up per statement,
# which shows once many writers share the cores. A month without its partition fails the append.
_APPEND_BY_MONTH: dict[tuple[int, int], Insert] = {}


def _append_on_postgresql(occurred_at: datetime) -> Insert:
    month = (occurred_at.year, occurred_at.month)
    statement = _APPEND_BY_MONTH.get(month)
    if statement is None:
        partition = Table(
            f"audit_events_y{month[0]:04d}m{month[1]:02d}",
            MetaData(),
            *(Column(column.name, column.type) for column in audit_events.c),
        )
        statement = (
            partition.insert()
            .values(
                {
                    column: func.nextval(ID_SEQUENCE)
                    if column.name == "id"
                    else bindparam(f"e_{column.name}", type_=column.type)
                    for column in partition.c
                }
            )
            .returning(partition.c.id)
        )
        _APPEND_BY_MONTH[month] = statement
    return statement


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AuditChainCorrupt(RuntimeError):
    """The chain head is missing or moved under us: appending would fork the chain."""


def _normalised(event: AuditEvent) -> AuditEvent:
    # Normalised first so the hash is computed over exactly what the database gives back.
    return dataclasses.replace(
        event, actor_kind=ActorKind(event.actor_kind), details=normalise_details(event.details)
    )


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


class SqlAuditLog:
    """AuditSink on the caller's connection; the entry commits or rolls back with the caller's
    transaction, so a failed operation leaves no entry (on PostgreSQL its id stays unused)."""

    def __init__(
        self,
        connection: AsyncConnection,
        clock: Callable[[], datetime] = _utc_now,
        *,
        in_transaction: bool = True,
    ) -> None:
        self._connection = connection
        self._clock = clock
        # False for an autocommit unit: the entry would commit apart from the change it records.
        self._in_transaction = in_transaction

    def _checked_connection(self) -> AsyncConnection:
        conn = self._connection
        if not self._in_transaction:
            raise RuntimeError("SqlAuditLog.append needs a unit of work with a transaction (not autocommit)")
        if not conn.in_transaction():
            # Autobegin would open a transaction nobody commits: the entry would vanish.
            raise RuntimeError("SqlAuditLog.append needs the caller's open transaction")
        return conn

    async def append(self, event: AuditEvent) -> AuditRecord:
        conn = self._checked_connection()
        event = _normalised(event)
        occurred_at = normalise_time(self._clock())
        fields = _fields(event, occurred_at)
        if conn.dialect.name == "postgresql":
            params = {f"e_{name}": value for name, value in fields.items()}
            seq = int((await conn.execute(_append_on_postgresql(occurred_at), params)).scalar_one())
            return AuditRecord(id=seq, occurred_at=occurred_at, event=event, prev_hash=None, hash=None)
        (record,) = await self._append_sealed(conn, [(event, occurred_at)])
        return record

    async def append_many(self, events: list[AuditEvent]) -> list[AuditRecord]:
        """Several entries in one statement (PostgreSQL) or under one hold of the lock (SQLite)."""
        conn = self._checked_connection()
        stamped = [(_normalised(raw), normalise_time(self._clock())) for raw in events]
        if not stamped:
            return []
        if conn.dialect.name != "postgresql":
            return await self._append_sealed(conn, stamped)
        # Through the parent: a batch may straddle a month's end.
        rows = [
            _fields(event, occurred_at) | {"id": func.nextval(ID_SEQUENCE)} for event, occurred_at in stamped
        ]
        ids = (await conn.execute(audit_events.insert().values(rows).returning(audit_events.c.id))).scalars()
        return [
            AuditRecord(id=int(seq), occurred_at=occurred_at, event=event, prev_hash=None, hash=None)
            for seq, (event, occurred_at) in zip(ids, stamped, strict=True)
        ]

    @staticmethod
    async def _append_sealed(
        conn: AsyncConnection, stamped: list[tuple[AuditEvent, datetime]]
    ) -> list[AuditRecord]:
        """SQLite: the head is read once under the write lock, the entries and their links are
        inserted, the head moves once. Ids are gap-free."""
        head = (await conn.execute(_LOCK_HEAD)).one_or_none()
        if head is None:
            raise AuditChainCorrupt("audit_chain_head row is missing")
        first_id, prev_hash = int(head.last_id), str(head.last_hash)
        records: list[AuditRecord] = []
        entries: list[dict[str, Any]] = []
        links: list[dict[str, Any]] = []
        for offset, (event, occurred_at) in enumerate(stamped, start=1):
            seq = first_id + offset
            digest = chain_hash(prev_hash, seq, occurred_at, event)
            entries.append(
                {f"e_{name}": value for name, value in _fields(event, occurred_at).items()} | {"e_id": seq}
            )
            links.append({"id": seq, "prev_hash": prev_hash, "hash": digest})
            records.append(
                AuditRecord(id=seq, occurred_at=occurred_at, event=event, prev_hash=prev_hash, hash=digest)
            )
            prev_hash = digest
        await conn.execute(_INSERT_EVENT, entries)
        await conn.execute(_INSERT_LINK, links)
        moved = await conn.execute(
            _ADVANCE_HEAD, {"prev_id": first_id, "next_id": records[-1].id, "next_hash": records[-1].hash}
        )
        if moved.rowcount != 1:
            # Only possible if the lock was not held (e.g. a misconfigured SQLite begin).
            raise AuditChainCorrupt("audit chain head moved during append")
        return records


def row_to_record(row: Mapping[Any, Any]) -> AuditRecord:
    """An entry row, with its link's `prev_hash`/`hash` when the query joined them (else None)."""
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
        prev_hash=row.get("prev_hash"),
        hash=row.get("hash"),
    )
