"""Exact sliding-window rate limiter in the worker's memory (embedded mode: one worker only).

Same semantics as the Redis limiter. `hit` never awaits between counting and recording, so it is
atomic within the event loop."""

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from application.ports.housekeeping import LimiterKeyCheck
from application.ports.rate_limiter import LimitDecision, RateLimit


@dataclass
class _Window:
    window_seconds: float
    admitted: deque[float] = field(default_factory=deque)


class InProcessSlidingWindowLimiter:
    """`RateLimiter` in memory. Memory stays bounded by the requests admitted in the last window:
    emptied keys are dropped, and a periodic sweep drops keys nobody hits any more."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, sweep_interval_seconds: float = 60.0
    ) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._sweep_interval = sweep_interval_seconds
        self._last_sweep = clock()

    async def hit(self, key: str, limit: RateLimit) -> LimitDecision:
        now = self._clock()
        self._maybe_sweep(now)
        window = self._windows.get(key)
        if window is None:
            window = _Window(limit.window_seconds)
        window.window_seconds = limit.window_seconds
        admitted = window.admitted
        # An entry counts while it is newer than now - window (same rule as the Redis script).
        horizon = now - limit.window_seconds
        while admitted and admitted[0] <= horizon:
            admitted.popleft()
        count = len(admitted)
        if count < limit.limit:
            admitted.append(now)
            self._windows[key] = window
            return LimitDecision(allowed=True, remaining=limit.limit - count - 1, retry_after=0.0)
        if count == 0 or limit.limit < 1:
            self._windows.pop(key, None)
            return LimitDecision(allowed=False, remaining=0, retry_after=limit.window_seconds)
        self._windows[key] = window
        # Admitting needs count - limit + 1 entries to leave; the last of them is at this index.
        leaves_at = admitted[count - limit.limit] + limit.window_seconds
        # Rounded up to the microsecond like the Redis limiter, and never 0 for a refusal.
        retry_after = max(math.ceil((leaves_at - now) * 1_000_000), 1) / 1_000_000
        return LimitDecision(allowed=False, remaining=0, retry_after=retry_after)

    async def hit_many(self, checks: Sequence[tuple[str, RateLimit]]) -> list[LimitDecision]:
        if len({key for key, _ in checks}) != len(checks):
            raise ValueError("hit_many needs distinct keys")  # as the Redis limiter
        return [await self.hit(key, limit) for key, limit in checks]

    async def reset(self, key: str) -> None:
        self._windows.pop(key, None)

    async def trim(self, longest_window_seconds: float) -> LimiterKeyCheck:
        """`RateLimitKeys`: this worker's keys nobody hits any more, dropped now (the same sweep
        hits run every `sweep_interval_seconds`). Keys have no expiry of their own here."""
        checked = len(self._windows)
        self._sweep(self._clock())
        return LimiterKeyCheck(checked, checked - len(self._windows), "swept this worker's memory")

    def _maybe_sweep(self, now: float) -> None:
        if now - self._last_sweep < self._sweep_interval:
            return
        self._sweep(now)

    def _sweep(self, now: float) -> None:
        self._last_sweep = now
        stale = [
            key
            for key, window in self._windows.items()
            if not window.admitted or window.admitted[-1] <= now - window.window_seconds
        ]
        for key in stale:
            del self._windows[key]

    def __len__(self) -> int:
        """Keys currently held (for tests and metrics)."""
        return len(self._windows)
