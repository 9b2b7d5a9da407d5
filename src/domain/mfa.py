"""Second factors: a TOTP credential, single-use recovery codes, and the login challenge that
sits between the password step and the code step."""

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

MFA_MAX_FAILURES = 5
RECOVERY_CODE_COUNT = 10


@dataclass
class TotpCredential:
    user_id: UUID
    secret_envelope: bytes  # secret-box envelope bound to this user's row; never the plain secret
    created_at: datetime
    confirmed_at: datetime | None = None
    last_step: int | None = None  # the newest accepted time step: it and older ones never again

    @property
    def enabled(self) -> bool:
        return self.confirmed_at is not None


@dataclass
class MfaChallenge:
    token_hash: str
    user_id: UUID
    created_at: datetime
    expires_at: datetime
    failures: int = 0
    used_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        return self.used_at is None and now < self.expires_at and self.failures < MFA_MAX_FAILURES


def normalise_recovery_code(code: str) -> str:
    """Recovery codes are shown grouped with dashes; people retype them any which way."""
    return "".join(ch for ch in code.upper() if ch.isalnum())


def is_recent(auth_time: datetime, now: datetime, window_seconds: float) -> bool:
    """Step-up: was the last full authentication within the window?"""
    return 0 <= (now - auth_time).total_seconds() <= window_seconds
