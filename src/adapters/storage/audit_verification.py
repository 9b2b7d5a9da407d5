"""Reading the audit log in chain order and re-deriving its hash chain (`bulwark audit verify`,
the admin panel's `POST /audit/verify`).

The chain covers what is sealed: every entry up to the head (`audit_chain_head`) has a link in
`audit_chain_links`, and every link an entry. Entries and links are walked side by side in id
order, in keyset-paginated batches, so a log of any length is checked in constant memory:

- an entry and its link: the link must follow the previous one and hash the entry's content;
- a link without its entry: a sealed entry was deleted, unless its partition was archived
  (`audit_archives`), where the link alone carries the chain across;
- an entry without a link at or below the head: a row slipped in after its place was sealed.

Entries above the head are not sealed yet; they are counted and reported, not judged. When old
partitions were archived, verification starts at the first retained entry (or the first link after
the archives, whichever is lower), from that entry's link: the checkpoint the archive left."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.audit_log import HEAD_ID, AuditChainCorrupt, row_to_record
from adapters.storage.tables import audit_archives, audit_chain_head, audit_chain_links, audit_events
from application.ports.audit import ChainCheck
from domain.audit import GENESIS_HASH, AuditRecord, ChainVerifier


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records_checked: int
    first_broken_id: int | None = None
    reason: str | None = None
    unsealed: int = 0  # committed entries after the head, not yet covered by the chain
    archived: int = 0  # links followed across archived (detached) partitions
    started_after: int = 0  # 0: from genesis; else the id before the first entry checked


@dataclass(frozen=True)
class Link:
    id: int
    prev_hash: str
    hash: str


async def _keyset(
    engine: AsyncEngine, table: Table, after_id: int, up_to_id: int | None, batch: int
) -> AsyncIterator[dict[str, Any]]:
    """Rows of `table` with id in (after_id, up_to_id], in id order. Each batch has its own short
    transaction (on SQLite every transaction takes the write lock); committed rows never change,
    so batches read at different times still form one consistent walk."""
    last_seen = after_id
    while True:
        query = select(table).where(table.c.id > last_seen).order_by(table.c.id).limit(batch)
        if up_to_id is not None:
            query = query.where(table.c.id <= up_to_id)
        # Fetched whole and the connection released before yielding: a consumer that stops early
        # keeps no connection (or SQLite's lock) checked out.
        async with engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        for row in rows:
            yield dict(row)
        if len(rows) < batch:
            return
        last_seen = int(rows[-1]["id"])


class SqlAuditReader:
    """AuditReader: records in id order with their links (None where not sealed yet)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def iterate(
        self, batch_size: int = 1000, *, after_id: int = 0, up_to_id: int | None = None
    ) -> AsyncIterator[AuditRecord]:
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        entries = self.entries(batch_size, after_id=after_id, up_to_id=up_to_id)
        links = self.links(batch_size, after_id=after_id, up_to_id=up_to_id)
        link = await anext(links, None)
        async for entry in entries:
            while link is not None and link.id < entry.id:
                link = await anext(links, None)
            if link is not None and link.id == entry.id:
                yield AuditRecord(entry.id, entry.occurred_at, entry.event, link.prev_hash, link.hash)
            else:
                yield entry

    async def entries(
        self, batch_size: int = 1000, *, after_id: int = 0, up_to_id: int | None = None
    ) -> AsyncIterator[AuditRecord]:
        async for row in _keyset(self._engine, audit_events, after_id, up_to_id, batch_size):
            yield row_to_record(row)

    async def links(
        self, batch_size: int = 1000, *, after_id: int = 0, up_to_id: int | None = None
    ) -> AsyncIterator[Link]:
        async for row in _keyset(self._engine, audit_chain_links, after_id, up_to_id, batch_size):
            yield Link(int(row["id"]), str(row["prev_hash"]), str(row["hash"]))

    async def head(self) -> tuple[int, str]:
        """(last_id, last_hash): how far the chain is sealed."""
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

    async def unsealed_after(self, head_id: int) -> int:
        async with self._engine.connect() as conn:
            count = (
                await conn.execute(
                    select(func.count()).select_from(audit_events).where(audit_events.c.id > head_id)
                )
            ).scalar_one()
        return int(count)

    async def archived_ranges(self) -> list[tuple[int, int]]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(audit_archives.c.first_id, audit_archives.c.last_id))).all()
        return [(int(first), int(last)) for first, last in rows]

    async def start_after_archives(self, ranges: list[tuple[int, int]]) -> int:
        """The id before the first one to check: 0 without archives, else just before the lower of
        the first retained entry and the first link after the archived ranges."""
        if not ranges:
            return 0
        archived_through = max(last for _, last in ranges)
        async with self._engine.connect() as conn:
            first_entry = (await conn.execute(select(func.min(audit_events.c.id)))).scalar_one_or_none()
            first_link = (
                await conn.execute(
                    select(func.min(audit_chain_links.c.id)).where(audit_chain_links.c.id > archived_through)
                )
            ).scalar_one_or_none()
        candidates = [int(value) for value in (first_entry, first_link) if value is not None]
        return min(candidates) - 1 if candidates else archived_through


async def verify_chain(engine: AsyncEngine, batch_size: int = 1000) -> VerifyResult:
    """Re-derive every sealed link, from genesis or from the checkpoint the archives left.

    The head is read first: everything up to it is sealed and immutable, so appends and seals
    running concurrently (ids beyond the head) neither disturb nor fail the check. The last link
    must then be the one the head names, which catches links and entries cut off the tail."""
    reader = SqlAuditReader(engine)
    head_id, head_hash = await reader.head()
    ranges = await reader.archived_ranges()
    start = await reader.start_after_archives(ranges)
    links = reader.links(batch_size, after_id=start, up_to_id=head_id)
    entries = reader.entries(batch_size, after_id=start, up_to_id=head_id)
    link = await anext(links, None)
    entry = await anext(entries, None)
    verifier = ChainVerifier(GENESIS_HASH, 0)
    if start and link is not None:
        verifier = ChainVerifier(link.prev_hash, start)  # the checkpoint at the first retained entry
    archived = 0
    while verifier.ok and (link is not None or entry is not None):
        if link is not None and (entry is None or link.id < entry.id):
            if any(first <= link.id <= last for first, last in ranges):
                archived += 1
                verifier.pass_over(link.id, link.prev_hash, link.hash)
            else:
                verifier.fail(link.id, f"entry {link.id} is sealed but its row is missing")
            link = await anext(links, None)
        elif entry is not None and (link is None or entry.id < link.id):
            if entry.id <= verifier.last_id:
                verifier.fail(entry.id, f"a second entry with id {entry.id}")
            else:
                verifier.fail(
                    entry.id, f"entry {entry.id} is not covered by the chain (no link up to the head)"
                )
        else:
            assert entry is not None and link is not None
            verifier.feed(AuditRecord(entry.id, entry.occurred_at, entry.event, link.prev_hash, link.hash))
            link = await anext(links, None)
            entry = await anext(entries, None)
    unsealed = await reader.unsealed_after(head_id)
    if not verifier.ok:
        return VerifyResult(
            False, verifier.checked, verifier.broken_at, verifier.reason, unsealed, archived, start
        )
    if head_id > start and verifier.last_id != head_id:
        return VerifyResult(
            False,
            verifier.checked,
            verifier.last_id + 1,
            f"chain ends at id {verifier.last_id} but the head records id {head_id}",
            unsealed,
            archived,
            start,
        )
    if head_id > start and verifier.last_hash != head_hash:
        return VerifyResult(
            False,
            verifier.checked,
            head_id,
            "the last entry's hash differs from the one recorded in the head",
            unsealed,
            archived,
            start,
        )
    return VerifyResult(True, verifier.checked, unsealed=unsealed, archived=archived, started_after=start)


class SqlAuditChainVerifier:
    """AuditChainVerifier over `verify_chain`, for the admin panel's `POST /audit/verify`."""

    def __init__(self, engine: AsyncEngine, batch_size: int = 1000) -> None:
        self._engine = engine
        self._batch_size = batch_size

    async def verify(self) -> ChainCheck:
        result = await verify_chain(self._engine, self._batch_size)
        return ChainCheck(
            result.ok, result.records_checked, result.first_broken_id, result.reason, result.unsealed
        )
