"""Bodies of the dedicated egress address routes (admin panel and the user's own)."""

from datetime import datetime
from uuid import UUID

import msgspec

from entrypoints.dto.identity import WriteBody


class MyEgressAddress(msgspec.Struct):
    address: str
    state: str
    since: datetime


class AdminEgressAddress(msgspec.Struct):
    address: str
    state: str
    since: datetime
    user_id: UUID | None  # the holder (allocated), or the last holder while the teardown runs
    provider_ref: str
    grace_until: datetime | None  # allocated to a user who stopped paying: teardown then
    cool_until: datetime | None  # cooling: reusable (or released) from then on


class AdminEgressAddressList(msgspec.Struct):
    items: list[AdminEgressAddress]
    next_cursor: str | None  # pass back as `cursor`; order is the address text


class ReleaseEgressRequest(WriteBody):
    reason: str | None = None


class EgressLeak(msgspec.Struct):
    address: str
    provider_ref: str
    labels: dict[str, str]


class EgressStale(msgspec.Struct):
    address: AdminEgressAddress
    why: str  # closed | suspended | paused | not_paying


class EgressBinding(msgspec.Struct):
    user_id: UUID
    address: str


class EgressWaiting(msgspec.Struct):
    user_id: UUID
    since: datetime
    attempts: int
    last_error: str
    notified_at: datetime | None


class EgressAuditResponse(msgspec.Struct):
    checked_at: datetime
    clean: bool
    ledger_size: int
    leaks: list[EgressLeak]
    missing: list[AdminEgressAddress]
    stale: list[EgressStale]
    broken: list[AdminEgressAddress]
    dangerous: list[EgressBinding]
    stuck: list[AdminEgressAddress]
    waiting: list[EgressWaiting]
    unchecked: list[str]
