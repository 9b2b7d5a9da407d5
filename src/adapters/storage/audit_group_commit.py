"""Group commit for audit entries that stand alone (the vault's credential accesses).

Entries that belong to no other change are queued and appended by one flusher per process, many
to a transaction: one commit for many entries (and, on SQLite, one hold of the write lock), and
every caller still returns only once its own entry is committed."""

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.audit_log import SqlAuditLog
from application.errors import DependencyUnavailable
from domain.audit import AuditEvent

MAX_BATCH = 256
GATHER_SECONDS = 0.002


def _utc_now() -> datetime:
    return datetime.now(UTC)


class GroupCommitAuditJournal:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime] = _utc_now) -> None:
        self._engine = engine
        self._clock = clock
        self._pending: list[tuple[AuditEvent, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def record(self, event: AuditEvent) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((event, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        # Shielded: a cancelled caller does not cancel the batch that carries others' entries.
        try:
            await asyncio.shield(done)
        except DependencyUnavailable:
            raise
        except Exception as error:
            raise DependencyUnavailable("The audit log cannot be written; nothing was handed out.") from error

    async def _flush(self) -> None:
        # A moment for the requests already under way to add theirs: bigger batches, fewer commits.
        await asyncio.sleep(GATHER_SECONDS)
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                async with self._engine.begin() as conn:
                    await SqlAuditLog(conn, self._clock).append_many([event for event, _ in batch])
            except Exception as error:  # every caller of this batch learns it failed
                for _, done in batch:
                    if not done.done():
                        done.set_exception(error)
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)

    async def drain(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
