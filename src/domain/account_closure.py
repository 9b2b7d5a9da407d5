"""Closing an account: the steps of the closure pipeline, in order, and what is left of a closed
account (its id, so audit entries still resolve, and a placeholder that is not an address)."""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

DELETION_TOKEN_TTL = timedelta(minutes=5)


class ClosureStep(StrEnum):
    """The pipeline's steps, in the order they run; a closure records the last one finished."""

    REQUESTED = "requested"  # committed with the request: the account is closed from here on
    SESSIONS_REVOKED = "sessions_revoked"
    BRIDGES_STOPPED = "bridges_stopped"
    BROKER_CREDENTIALS_DESTROYED = "broker_credentials_destroyed"
    EGRESS_RELEASED = "egress_released"
    MEMBERSHIPS_REMOVED = "memberships_removed"
    PERSONAL_DATA_ERASED = "personal_data_erased"


STEP_ORDER: tuple[ClosureStep, ...] = tuple(ClosureStep)


def steps_after(step: ClosureStep) -> tuple[ClosureStep, ...]:
    return STEP_ORDER[STEP_ORDER.index(step) + 1 :]


def steps_before(step: ClosureStep) -> tuple[ClosureStep, ...]:
    return STEP_ORDER[: STEP_ORDER.index(step)]


class ClosureRequester(StrEnum):
    USER = "user"  # the account's own holder
    ADMIN = "admin"  # a platform administrator


@dataclass(frozen=True)
class AccountClosure:
    user_id: UUID
    requested_at: datetime
    requested_by: UUID
    requested_by_kind: ClosureRequester
    step_reached: ClosureStep = ClosureStep.REQUESTED
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


def erased_email(user_id: UUID) -> str:
    """What a closed account's email column holds: unique per user, and never a valid address (no
    `@`), so nobody can register or log in with it and the real address is free again."""
    return f"closed:{user_id}"


CLOSED_ORG_NAME = "Closed account"


@dataclass(frozen=True)
class DeletionToken:
    """An administrator's confirmation to delete one account, as shown: single use, short-lived,
    bound to the administrator, the target and the digest of the summary they saw."""

    token_hash: str
    admin_id: UUID
    target_id: UUID
    summary_digest: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        return self.used_at is None and now < self.expires_at


def summary_digest(summary: dict[str, Any]) -> str:
    """A stable digest of what the administrator was shown (order-independent rendering)."""
    rendered = json.dumps(summary, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(rendered.encode()).hexdigest()
