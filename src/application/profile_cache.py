"""A worker's short-lived memory of profiles, so GET /me (called on every SPA page) does not cost
two queries. Entries live a couple of seconds; changes made in this worker drop them at once, so
other workers are behind by at most the TTL. Nothing that authorizes reads from here."""

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar
from uuid import UUID

T = TypeVar("T")


class ProfileCache(Generic[T]):
    def __init__(
        self, ttl_seconds: float = 2.0, max_entries: int = 50_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[tuple[UUID, UUID], tuple[float, T]] = OrderedDict()
        # Bumped by every forget/clear: a load that began before one may not be cached, nor
        # shared with requests that came after it (it may have read what was just changed).
        self.generation = 0

    def get(self, user_id: UUID, org_id: UUID) -> T | None:
        entry = self._entries.get((user_id, org_id))
        if entry is None:
            return None
        if entry[0] <= self.clock():
            del self._entries[(user_id, org_id)]
            return None
        return entry[1]

    def put(self, user_id: UUID, org_id: UUID, value: T, generation: int | None = None) -> None:
        """`generation`: the one current when the value was read; stale by now means not kept."""
        if self.ttl <= 0 or (generation is not None and generation != self.generation):
            return
        self._entries[(user_id, org_id)] = (self.clock() + self.ttl, value)
        self._entries.move_to_end((user_id, org_id))
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget_user(self, user_id: UUID) -> None:
        self.generation += 1
        for key in [k for k in self._entries if k[0] == user_id]:
            del self._entries[key]

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
