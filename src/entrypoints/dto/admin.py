"""Bodies of the platform admin API."""

from datetime import datetime
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
