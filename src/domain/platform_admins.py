"""Platform administrators: an account's separate admin credentials (password, TOTP factor,
recovery codes), their temporary lock after repeated failures, and admin sessions."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

# The admin token's audience and type: never the user API's, so neither token crosses over.
ADMIN_AUDIENCE = "bulwark-admin"


@dataclass
class PlatformAdmin:
    user_id: UUID
    password_hash: str  # hashed under the admin-password pepper purpose, never the user one
    pepper_version: str
    totp_envelope: bytes  # secret-box envelope bound to this row; never the plain secret
    created_at: datetime
    totp_last_step: int | None = None  # the newest accepted step: it and older ones never again
    locked_until: datetime | None = None
    lock_count: int = 0  # consecutive locks since the last good login: each lasts longer
    updated_at: datetime | None = None
    # When a TOTP code first opened an admin session (or an operator set the factor on the
    # server): only then does the administrator count among the active ones.
    factor_confirmed_at: datetime | None = None

    def is_locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until


@dataclass(frozen=True)
class PendingAdmin:
    """A promotion waiting for its owner to set the admin credentials by the mailed link: no
    credentials, no login, not counted as an active administrator."""

    user_id: UUID
    invited_by: UUID | None
    created_at: datetime
    expires_at: datetime

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at


def lock_duration(previous_locks: int, durations: Sequence[timedelta]) -> timedelta:
    """The n-th consecutive lock lasts durations[n]; past the end, the last one again. Always finite:
    a lock may delay an administrator, never shut them out for good."""
    if not durations:
        raise ValueError("at least one lock duration is needed")
    return durations[min(max(previous_locks, 0), len(durations) - 1)]


@dataclass
class AdminSession:
    id: UUID
    user_id: UUID
    created_at: datetime
    last_used_at: datetime
    idle_expires_at: datetime
    absolute_expires_at: datetime
    ip: str | None = None
    user_agent: str | None = None
    revoked_at: datetime | None = None
    revoked_reason: str | None = None

    def is_live(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.idle_expires_at and now < self.absolute_expires_at

    def idle_deadline(self, now: datetime, idle: timedelta) -> datetime:
        """Where a use at `now` moves the idle expiry: never past the absolute one."""
        return min(now + idle, self.absolute_expires_at)
