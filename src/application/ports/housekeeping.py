"""What the housekeeping job asks of storage and of the rate limiter: deletions in small batches
(each its own short transaction, so no hot table is locked for long) and a check of the limiter's
keys."""

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


class ExpiredRows(Protocol):
    async def purge_dead_sessions(self, dead_before: datetime, batch_size: int) -> int:
        """Deletes up to `batch_size` sessions revoked, or past their absolute expiry, before
        `dead_before` (their refresh tokens go with them); the number deleted. A live session,
        and so every refresh token of it (grace successors included), is never touched."""
        ...

    async def purge_spent_tokens(self, expired_before: datetime, batch_size: int) -> int:
        """Deletes up to `batch_size` one-time tokens, second-factor challenges and the single-use
        states of the broker OAuth, SSO and confirmed-deletion flows that expired before
        `expired_before`; the number deleted. Tokens not yet expired stay, used or not."""
        ...


@dataclass(frozen=True)
class LimiterKeyCheck:
    checked: int  # rate-limit keys looked at
    repaired: int  # keys that had no expiry: trimmed to the longest window and given one
    note: str = ""


class RateLimitKeys(Protocol):
    async def trim(self, longest_window_seconds: float) -> LimiterKeyCheck:
        """Makes sure no rate-limit key outlives its window: entries older than the longest
        window are dropped and keys without an expiry get one."""
        ...
