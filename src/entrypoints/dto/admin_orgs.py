"""Bodies of the admin panel's organisation routes."""

from datetime import datetime
from uuid import UUID

import msgspec


class AdminOrgSummary(msgspec.Struct):
    id: UUID
    name: str
    personal: bool
    status: str
    require_2fa: bool
    created_at: datetime


class AdminOrgList(msgspec.Struct):
    items: list[AdminOrgSummary]
    next_cursor: str | None  # opaque: pass back as `cursor`; order is created_at, then id


class AdminOrgDetail(msgspec.Struct):
    id: UUID
    name: str
    personal: bool
    status: str
    require_2fa: bool
    created_at: datetime
    members: int
