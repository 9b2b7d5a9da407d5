"""Where a bridge's limits and presence are kept: one step per bridge call, shared by every
worker (Redis in production), so the two-terminals rule sees the calls all workers took."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID

from application.ports.rate_limiter import LimitDecision, RateLimit
from domain.bridge_presence import SecondTerminal


@dataclass(frozen=True)
class Sighting:
    """One bridge call as the presence rule sees it."""

    ip: str
    at: datetime  # the service's clock
    sent_at: datetime | None = None  # heartbeats: the terminal's clock
    figure: str | None = None  # heartbeats: the balance (`figure_of`)


@dataclass(frozen=True)
class PresenceVerdict:
    decisions: list[LimitDecision]  # one per window, in the order given
    second_terminal: SecondTerminal | None  # only when every window admitted the call
    previous_ip: str | None


class BridgePresence(Protocol):
    async def admit(
        self,
        bridge_id: UUID,
        sighting: Sighting,
        windows: Sequence[tuple[str, RateLimit]],
        interval: timedelta,
    ) -> PresenceVerdict:
        """Counts the call against `windows` (keys as the `RateLimiter` names them, so the same
        window can be counted by either) and, when all admit it, applies `observe` to the
        bridge's presence; one atomic step."""
        ...
