"""The audit log's monthly partitions on PostgreSQL (SQLite has none: every call is a no-op there).

`create_ahead` runs as the service role through `bulwark_audit_partitions_ahead` (SECURITY
DEFINER, migration 0014): this month's partition and the next months', so that an append never
finds its month missing. `archive_before` runs as the tables' owner (`bulwark audit archive`): it
detaches whole, fully sealed months, oldest first, and records each in `audit_archives` (its id
range, entry count and the chain's hash at its last entry). The detached table stays in the
database, outside the log, for the operator to dump and drop; the chain's links stay, so
verification of what remains starts from the first retained entry's link."""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.storage.audit_log import HEAD_ID
from adapters.storage.tables import audit_archives, audit_chain_head, audit_chain_links

_NAME = re.compile(r"audit_events_y(\d{4})m(\d{2})")
_AHEAD = text("SELECT bulwark_audit_partitions_ahead(:months)")
_ATTACHED = text(
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = 'public.audit_events'::regclass ORDER BY c.relname"
)


def is_audit_partition(name: str | None) -> bool:
    """A month's partition of audit_events (made by the job, not by the tables module)."""
    return name is not None and _NAME.fullmatch(name) is not None


def partition_month(name: str) -> date:
    match = _NAME.fullmatch(name)
    if match is None:
        raise ValueError(f"{name} is not an audit partition")
    return date(int(match[1]), int(match[2]), 1)


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


class ArchiveRefused(RuntimeError):
    """A partition cannot be detached yet (its month is not over, or not all of it is sealed)."""


@dataclass(frozen=True)
class ArchivedPartition:
    name: str
    first_id: int
    last_id: int
    entries: int


class SqlAuditPartitions:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @property
    def _partitioned(self) -> bool:
        return self._engine.dialect.name == "postgresql"

    async def create_ahead(self, months: int) -> int:
        if not self._partitioned:
            return 0
        async with self._engine.begin() as conn:
            return int((await conn.execute(_AHEAD, {"months": months})).scalar_one())

    async def attached(self) -> list[str]:
        if not self._partitioned:
            return []
        async with self._engine.connect() as conn:
            return [
                str(name) for name in (await conn.execute(_ATTACHED)).scalars() if is_audit_partition(name)
            ]

    async def archive_before(self, cutoff: date, *, today: date | None = None) -> list[ArchivedPartition]:
        """Detaches every partition whose month ends on or before `cutoff`, oldest first, one
        transaction each. Refuses a month not over yet, or one holding an unsealed entry."""
        if not self._partitioned:
            return []
        this_month = (today or datetime.now(UTC).date()).replace(day=1)
        if cutoff > this_month:
            raise ArchiveRefused(f"{cutoff} is after the start of this month: its entries are still written")
        archived = []
        for name in await self.attached():
            if next_month(partition_month(name)) > cutoff:
                continue
            async with self._engine.begin() as conn:
                archived.append(await self._detach(conn, name))
        return archived

    @staticmethod
    async def _detach(conn: AsyncConnection, name: str) -> ArchivedPartition:
        # The head's lock: no seal moves it while this month is judged complete.
        head_id = int(
            (
                await conn.execute(
                    select(audit_chain_head.c.last_id)
                    .where(audit_chain_head.c.id == HEAD_ID)
                    .with_for_update()
                )
            ).scalar_one()
        )
        quoted = conn.dialect.identifier_preparer.quote(name)
        stats = (await conn.execute(text(f"SELECT min(id), max(id), count(*) FROM {quoted}"))).one()  # noqa: S608
        first_id, last_id, entries = int(stats[0] or 0), int(stats[1] or 0), int(stats[2])
        if last_id > head_id:
            raise ArchiveRefused(
                f"{name} holds entries not sealed yet (up to {last_id}); run the sealer first"
            )
        last_hash = (
            await conn.execute(select(audit_chain_links.c.hash).where(audit_chain_links.c.id == last_id))
        ).scalar_one_or_none()
        await conn.execute(
            audit_archives.insert().values(
                partition_name=name,
                first_id=first_id,
                last_id=last_id,
                entries=entries,
                last_hash=last_hash or "",
                detached_at=func.now(),
            )
        )
        await conn.execute(text(f"ALTER TABLE audit_events DETACH PARTITION {quoted}"))
        return ArchivedPartition(name, first_id, last_id, entries)
