"""Single-use tokens mailed to users (email verification, password reset, admin enrolment)."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID


class TokenPurpose(StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"  # noqa: S105 - a purpose name, not a secret
    ADMIN_ENROLMENT = "admin_enrolment"  # sets a promoted administrator's admin credentials


@dataclass
class OneTimeToken:
    token_hash: str
    user_id: UUID
    purpose: TokenPurpose
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        return self.used_at is None and now < self.expires_at
