"""Bodies of the platform admin API."""

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from entrypoints.dto.identity import WriteBody


class AdminLoginRequest(WriteBody):
    email: str
    admin_password: str
    totp_code: str  # six digits, or a recovery code in its place


class AdminMeResponse(msgspec.Struct):
    user_id: UUID
    email: str
    display_name: str
    session_id: UUID
    auth_time: datetime
    expires_at: datetime


class PromoteAdminRequest(WriteBody):
    """Exactly one of the two: the account to promote."""

    user_id: UUID | None = None
    email: str | None = None


class AdministratorResponse(msgspec.Struct):
    user_id: UUID
    email: str
    display_name: str
    state: str  # pending | enrolled | active
    account_status: str
    created_at: datetime
    factor_confirmed_at: datetime | None
    locked_until: datetime | None
    enrolment_expires_at: datetime | None


class AdministratorList(msgspec.Struct):
    administrators: list[AdministratorResponse]


class AdminUnlockResponse(msgspec.Struct):
    unlocked: bool  # false when the administrator was not locked


class AdminEnrolmentRequest(WriteBody):
    token: str
    admin_password: str


class AdminEnrolmentResponse(msgspec.Struct):
    """Shown once: add the URI to an authenticator, keep the codes; the first admin login with a
    TOTP code confirms the factor."""

    user_id: UUID
    otpauth_uri: str
    recovery_codes: list[str]


class PlatformAuditEntry(msgspec.Struct):
    id: int
    occurred_at: datetime
    action: str
    actor_kind: str
    actor_user_id: UUID | None
    org_id: UUID | None
    target_type: str | None
    target_id: str | None
    source_ip: str | None
    user_agent: str | None
    request_id: str | None
    details: dict[str, Any]
    # The entry's chain link; null for the few seconds until the sealer has chained it.
    prev_hash: str | None
    hash: str | None


class PlatformAuditList(msgspec.Struct):
    entries: list[PlatformAuditEntry]
    next_cursor: str | None


class BrokenLink(msgspec.Struct):
    id: int
    reason: str | None


class AuditVerifyResponse(msgspec.Struct):
    ok: bool
    checked: int
    first_broken: BrokenLink | None
    unsealed: int = 0  # entries committed after the sealed head: not yet covered, not judged


class DeletionSummaryView(msgspec.Struct):
    user_id: UUID
    email: str
    display_name: str
    status: str
    platform_administrator: bool
    orgs: list[dict[str, str]]
    live_sessions: int
    bridges: int
    broker_connections: int


class DeletionTokenResponse(msgspec.Struct):
    confirmation_token: str
    expires_at: datetime
    summary: DeletionSummaryView


class DeleteUserRequest(WriteBody):
    confirmation_token: str | None = None
