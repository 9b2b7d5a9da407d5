"""Users and their platform-wide standing."""

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from domain.plans import DEFAULT_PLAN
from domain.text_rules import canonical_email


class PlatformRole(StrEnum):
    USER = "user"
    PLATFORM_ADMINISTRATOR = "platform_administrator"


class UserStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    PAUSED = "paused"  # by a platform administrator, until unpaused
    CLOSED = "closed"  # by the account closure pipeline: personal data erased, the id kept


@dataclass
class User:
    id: UUID
    email: str
    display_name: str
    password_hash: str
    pepper_version: str
    created_at: datetime
    platform_role: PlatformRole = PlatformRole.USER
    status: UserStatus = UserStatus.ACTIVE
    email_verified_at: datetime | None = None
    default_org_id: UUID | None = None
    plan: str = DEFAULT_PLAN  # one of the operator's plans (domain.plans)
    updated_at: datetime | None = field(default=None)

    @property
    def is_verified(self) -> bool:
        return self.email_verified_at is not None

    @property
    def is_suspended(self) -> bool:
        """May not act at all: anything but active (suspended, paused or closed)."""
        return self.status is not UserStatus.ACTIVE

    @property
    def is_paused(self) -> bool:
        return self.status is UserStatus.PAUSED


def normalise_email(email: str) -> str:
    """Addresses are compared case-insensitively; the domain part is never case-sensitive and
    nobody expects the local part to be either, so one canonical form avoids duplicate accounts."""
    return canonical_email(email)
