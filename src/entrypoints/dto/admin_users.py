"""Bodies of the admin panel's account routes."""

from datetime import datetime
from uuid import UUID

import msgspec

from entrypoints.dto.identity import WriteBody


class AdminUserSummary(msgspec.Struct):
    id: UUID
    email: str
    display_name: str
    status: str
    plan: str
    paying: bool
    created_at: datetime


class AdminUserList(msgspec.Struct):
    items: list[AdminUserSummary]
    next_cursor: str | None  # opaque: pass back as `cursor`; order is email, then id


class AdminUserOrg(msgspec.Struct):
    id: UUID
    name: str
    role: str
    status: str
    personal: bool


class AdminUserDetail(msgspec.Struct):
    id: UUID
    email: str
    display_name: str
    status: str
    plan: str
    paying: bool
    platform_admin: bool
    email_verified: bool
    created_at: datetime
    orgs: list[AdminUserOrg]
    two_factor_enabled: bool
    live_sessions: int
    broker_connections: int
    bridges: int
    egress_address: str | None
    last_login_at: datetime | None


class SetPlanRequest(WriteBody):
    plan: str


class LoggedOutEverywhere(msgspec.Struct):
    sessions_revoked: int
