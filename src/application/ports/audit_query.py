from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from domain.audit import AuditRecord


@dataclass(frozen=True)
class AuditFilter:
    actor: UUID | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    # The platform-wide view's extra filters (an org's own view is scoped by its org already).
    org_id: UUID | None = None
    action_prefix: str | None = None  # "admin." matches admin.promoted, admin.demoted, ...
    source_ip: str | None = None


class AuditQuery(Protocol):
    async def page(
        self, org_id: UUID, criteria: AuditFilter, before_id: int | None, limit: int
    ) -> list[AuditRecord]:
        """Entries of this org only, newest first, with ids below `before_id`."""
        ...

    async def page_all(self, criteria: AuditFilter, before_id: int | None, limit: int) -> list[AuditRecord]:
        """Entries of every org (and of none), newest first, with ids below `before_id`: for
        platform administrators only."""
        ...
