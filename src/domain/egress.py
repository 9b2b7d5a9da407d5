"""Dedicated outbound IPv4 addresses, each owned by at most one paying user at a time."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID


class EgressState(StrEnum):
    FREE = "free"
    ALLOCATED = "allocated"
    DRAINING = "draining"  # first phase of the two-phase teardown


@dataclass
class EgressAddress:
    address: str
    state: EgressState
    user_id: UUID | None = None
    allocated_at: datetime | None = None
