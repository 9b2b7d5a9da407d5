"""Revocation state held in the worker's memory.

`RevocationState` is the in-memory model shared by both stores: the Redis store keeps one per
worker, fed by pub/sub. `InProcessRevocationStore` is that state alone, for embedded mode (one
worker). Instants are integer microseconds since the epoch, so comparisons are exact."""

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Margin on top of the access-token lifetime before a "not before" entry is forgotten: covers
# clock skew between the instances that issue tokens and the one that set the instant.
NOT_BEFORE_MARGIN_SECONDS = 300


def to_micros(instant: datetime) -> int:
    """Exact microseconds since the epoch. Naive datetimes are refused rather than guessed."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("revocation instants must be timezone-aware")
    return (instant - _EPOCH) // _MICROSECOND


def wall_clock_micros() -> int:
    return time.time_ns() // 1000


def _keep_latest(table: dict[UUID, int], key: UUID, instant_us: int) -> None:
    # Never move an instant back: a later logout-all must not be undone by an older message.
    current = table.get(key)
    if current is None or instant_us > current:
        table[key] = instant_us


class RevocationState:
    """Revoked sessions (until they expire) and per-user / per-org "not before" instants (until
    every token issued before them has expired). Merges keep the latest instant, so applying the
    same change twice, or out of order, gives the same state."""

    def __init__(
        self,
        *,
        max_token_ttl_seconds: int = 900,
        clock: Callable[[], int] = wall_clock_micros,
        purge_interval_seconds: float = 30.0,
    ) -> None:
        self.sessions: dict[UUID, int] = {}  # session id -> expires at
        self.users: dict[UUID, int] = {}  # user id -> not before
        self.orgs: dict[UUID, int] = {}  # org id -> not before
        self.not_before_retention_us = (max_token_ttl_seconds + NOT_BEFORE_MARGIN_SECONDS) * 1_000_000
        self._clock = clock
        self._purge_interval_us = int(purge_interval_seconds * 1_000_000)
        self._last_purge = clock()

    def add_session(self, session_id: UUID, expires_at_us: int) -> None:
        _keep_latest(self.sessions, session_id, expires_at_us)

    def add_user(self, user_id: UUID, not_before_us: int) -> None:
        _keep_latest(self.users, user_id, not_before_us)

    def add_org(self, org_id: UUID, not_before_us: int) -> None:
        _keep_latest(self.orgs, org_id, not_before_us)

    def is_revoked(self, session_id: UUID, user_id: UUID, org_id: UUID, issued_at_us: int) -> bool:
        self.maybe_purge()
        if session_id in self.sessions:
            return True
        user_not_before = self.users.get(user_id)
        if user_not_before is not None and issued_at_us < user_not_before:
            return True
        org_not_before = self.orgs.get(org_id)
        return org_not_before is not None and issued_at_us < org_not_before

    def maybe_purge(self) -> None:
        now = self._clock()
        if now - self._last_purge >= self._purge_interval_us:
            self.purge(now)

    def purge(self, now_us: int | None = None) -> None:
        """Forget what can no longer matter: sessions past their expiry (their tokens are dead
        anyway) and "not before" instants older than the longest token lifetime."""
        now = self._clock() if now_us is None else now_us
        self._last_purge = now
        for session_id in [s for s, expires in self.sessions.items() if expires <= now]:
            del self.sessions[session_id]
        horizon = now - self.not_before_retention_us
        for table in (self.users, self.orgs):
            for key in [k for k, not_before in table.items() if not_before < horizon]:
                del table[key]

    def __len__(self) -> int:
        return len(self.sessions) + len(self.users) + len(self.orgs)


class InProcessRevocationStore:
    """`RevocationStore` in memory, for a single worker."""

    def __init__(
        self,
        *,
        max_token_ttl_seconds: int = 900,
        clock: Callable[[], int] = wall_clock_micros,
        purge_interval_seconds: float = 30.0,
    ) -> None:
        self.state = RevocationState(
            max_token_ttl_seconds=max_token_ttl_seconds,
            clock=clock,
            purge_interval_seconds=purge_interval_seconds,
        )

    async def revoke_session(self, session_id: UUID, expires_at: datetime) -> None:
        self.state.add_session(session_id, to_micros(expires_at))

    async def set_user_not_before(self, user_id: UUID, instant: datetime) -> None:
        self.state.add_user(user_id, to_micros(instant))

    async def set_org_not_before(self, org_id: UUID, instant: datetime) -> None:
        self.state.add_org(org_id, to_micros(instant))

    async def is_revoked(self, session_id: UUID, user_id: UUID, org_id: UUID, issued_at: datetime) -> bool:
        return self.state.is_revoked(session_id, user_id, org_id, to_micros(issued_at))

    async def healthy(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
