"""A background task of the worker that runs one job every so often (resuming unfinished
account closures): a failed round is logged and the next one tries again."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("bulwark.jobs")


class PeriodicJob:
    def __init__(self, job: Callable[[], Awaitable[object]], interval_seconds: float) -> None:
        self.job = job
        self.interval = interval_seconds
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.interval > 0 and self._task is None:
            self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.job()
            except Exception:
                log.exception("background job failed; retried in %s s", self.interval)
