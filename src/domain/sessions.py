"""Login sessions and their rotating refresh tokens."""

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID


@dataclass
class Session:
    id: UUID
    user_id: UUID
    org_id: UUID
    created_at: datetime
    last_used_at: datetime
    auth_time: datetime
    idle_expires_at: datetime
    absolute_expires_at: datetime
    ip: str | None = None
    user_agent: str | None = None
    revoked_at: datetime | None = None
    revoked_reason: str | None = None

    def is_live(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.idle_expires_at and now < self.absolute_expires_at

    def touched(self, now: datetime, idle: timedelta) -> None:
        """Using a session extends its idle limit, never past its absolute limit."""
        self.last_used_at = now
        self.idle_expires_at = min(now + idle, self.absolute_expires_at)


@dataclass
class RefreshToken:
    token_hash: str
    session_id: UUID
    created_at: datetime
    rotated_at: datetime | None = None
    successor_hash: str | None = None


# Marks refresh tokens retired by an org switch (no successor of their own): presenting one soon
# after is a tab that raced the switch, not a thief.
RETIRED_BY_SWITCH = "retired:org-switch"


def token_digest(raw_token: str) -> str:
    """Refresh and one-time tokens are stored only as their SHA-256 (they carry 256 random bits,
    so a fast hash is enough: there is nothing to brute-force)."""
    return hashlib.sha256(raw_token.encode()).hexdigest()
