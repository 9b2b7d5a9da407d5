"""Bridge limits and presence in the worker's memory (embedded mode: one worker only). Same
semantics as the Redis script: the windows are the in-process limiter's, the rule is `observe`.
Nothing awaits between counting and recording, so one call is atomic within the event loop."""

import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from uuid import UUID

from adapters.limiter.in_process import InProcessSlidingWindowLimiter
from application.ports.bridge_presence import PresenceVerdict, Sighting
from application.ports.rate_limiter import RateLimit
from domain.bridge_presence import Presence, observe

SWEEP_SECONDS = 60.0


class InProcessBridgePresence:
    def __init__(
        self, limiter: InProcessSlidingWindowLimiter, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limiter = limiter
        self._clock = clock
        self._states: dict[UUID, tuple[Presence, float]] = {}  # with when it may be dropped
        self._last_sweep = clock()

    async def admit(
        self,
        bridge_id: UUID,
        sighting: Sighting,
        windows: Sequence[tuple[str, RateLimit]],
        interval: timedelta,
    ) -> PresenceVerdict:
        decisions = await self._limiter.hit_many(windows)  # no await inside: atomic
        if not all(d.allowed for d in decisions):
            return PresenceVerdict(decisions, None, None)
        now = self._clock()
        self._sweep(now)
        held = self._states.get(bridge_id)
        state = held[0] if held is not None and held[1] > now else None
        sent_ms = None if sighting.sent_at is None else round(sighting.sent_at.timestamp() * 1000)
        presence, flag = observe(
            state,
            sighting.ip,
            round(sighting.at.timestamp() * 1_000_000),
            round(interval.total_seconds() * 1_000_000),
            sent_ms,
            sighting.figure,
        )
        ttl = max(60.0, interval.total_seconds() * 4)  # as the Redis hash's expiry
        self._states[bridge_id] = (presence, now + ttl)
        return PresenceVerdict(decisions, flag, state.ip if state else None)

    def _sweep(self, now: float) -> None:
        if now - self._last_sweep < SWEEP_SECONDS:
            return
        self._last_sweep = now
        for bridge_id in [b for b, (_, until) in self._states.items() if until <= now]:
            del self._states[bridge_id]
