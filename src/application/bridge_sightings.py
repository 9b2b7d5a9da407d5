"""Bridges' last-seen marks, written in batches: a heartbeat stores its mark in the worker's
memory and returns; a flusher writes all pending marks in one statement about once a second.

A bridge heartbeats every 30 s, so a mark a second late changes nothing anyone can see, while a
transaction per heartbeat would cap a machine at a few thousand bridges. Only the newest mark
of a bridge is kept. A flush that fails keeps its marks for the next one (newer ones win); a
worker that dies loses at most one interval of marks, which the next heartbeats replace."""

import asyncio
import contextlib
import logging
from uuid import UUID

from application.ports.bridge_repository import LastSeen
from application.ports.unit_of_work import UnitOfWorkFactory

log = logging.getLogger("bulwark.bridges")

MAX_BATCH = 5_000


class BridgeSightings:
    def __init__(self, uow: UnitOfWorkFactory, interval_seconds: float = 1.0) -> None:
        self._uow = uow
        self._interval = interval_seconds
        self._pending: dict[UUID, LastSeen] = {}
        self._task: asyncio.Task[None] | None = None

    def note(self, mark: LastSeen) -> None:
        held = self._pending.get(mark.bridge_id)
        if held is None or held.at <= mark.at:
            self._pending[mark.bridge_id] = mark

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> int:
        """Writes what is pending now; answers how many rows changed."""
        changed = 0
        while self._pending:
            # In id order: two workers' batches lock shared rows in one order, never a deadlock.
            batch = sorted(self._pending.values(), key=lambda mark: mark.bridge_id)[:MAX_BATCH]
            for mark in batch:
                del self._pending[mark.bridge_id]
            try:
                async with self._uow() as uow:
                    changed += await uow.bridges.seen_many(batch)
                    await uow.commit()
            except BaseException:
                for mark in batch:  # back for the next flush, unless a newer one came meanwhile
                    self.note(mark)
                raise
        return changed

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="bridge-sightings")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.flush()
        except Exception:
            log.exception("could not write %d bridges' last-seen marks at shutdown", self.pending)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except Exception:
                log.exception("could not write %d bridges' last-seen marks; retrying", self.pending)
