"""EgressBindingLookup for the Squid helper, batched: the admissions that arrive together (Squid
sends up to `concurrency` logins at once) are answered by one read of the ledger. Nothing is
cached: every caller's answer comes from a read that began after it asked, so a teardown
committed before a login arrives is seen by that login, exactly as with one read per call."""

import asyncio
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.tables import egress_addresses, users
from domain.egress import EgressState
from domain.users import UserStatus

_A = egress_addresses.c
MAX_BATCH = 256


class BatchedEgressBindingLookup:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._asked: dict[UUID, list[asyncio.Future[str | None]]] = {}
        self._reads: set[asyncio.Task[None]] = set()

    async def live_address(self, user_id: UUID) -> str | None:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[str | None] = loop.create_future()
        if not self._asked:
            loop.call_soon(self._start_read)  # after the other lines this tick brings
        self._asked.setdefault(user_id, []).append(answer)
        return await answer

    def _start_read(self) -> None:
        while self._asked:
            batch = dict(list(self._asked.items())[:MAX_BATCH])
            for user_id in batch:
                del self._asked[user_id]
            task = asyncio.ensure_future(self._read(batch))
            self._reads.add(task)
            task.add_done_callback(self._reads.discard)

    async def _read(self, batch: dict[UUID, list[asyncio.Future[str | None]]]) -> None:
        try:
            async with self.engine.connect() as connection:
                rows = await connection.execute(
                    select(_A.user_id, _A.address)
                    .join(users, users.c.id == _A.user_id)
                    .where(
                        _A.state == str(EgressState.ALLOCATED),
                        _A.user_id.in_(list(batch)),
                        users.c.status == str(UserStatus.ACTIVE),  # a paused holder stops at once
                    )
                )
                live = {row.user_id: row.address for row in rows}
        except Exception as error:
            for waiting in batch.values():
                for answer in waiting:
                    if not answer.done():
                        answer.set_exception(error)
            return
        for user_id, waiting in batch.items():
            for answer in waiting:
                if not answer.done():
                    answer.set_result(live.get(user_id))
