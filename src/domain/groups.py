"""Groups: named sets of org members that roles are assigned to as a whole."""

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID


@dataclass
class Group:
    id: UUID
    org_id: UUID
    name: str
    created_at: datetime
    description: str = ""
