from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class RateLimit:
    limit: int
    window_seconds: float


@dataclass(frozen=True)
class LimitDecision:
    allowed: bool
    remaining: int
    retry_after: float  # seconds until a request would be admitted again; 0 when allowed


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: RateLimit) -> LimitDecision:
        """Atomically count one request against a sliding window, admitting it only when fewer
        than `limit.limit` were admitted in the last `limit.window_seconds`. Fails closed: when
        the count cannot be taken (the store is unreachable) it raises `DependencyUnavailable`
        with a `retry_after`, never admits uncounted."""
        ...

    async def hit_many(self, checks: Sequence[tuple[str, RateLimit]]) -> list[LimitDecision]:
        """`hit` for every (key, limit), in order and in one step (one round trip where the
        counts live remotely); each key is counted on its own, whatever the others decide.
        The keys must be distinct (ValueError otherwise): one step counts a key once."""
        ...

    async def reset(self, key: str) -> None: ...
