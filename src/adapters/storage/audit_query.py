"""Reading an org's audit entries: newest first, keyset-paginated, never another org's."""

from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.storage.audit_log import row_to_record
from adapters.storage.tables import audit_events
from application.ports.audit_query import AuditFilter
from domain.audit import AuditRecord


class SqlAuditQuery:
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def page(
        self, org_id: UUID, criteria: AuditFilter, before_id: int | None, limit: int
    ) -> list[AuditRecord]:
        query = select(audit_events).where(audit_events.c.org_id == org_id)
        if criteria.actor is not None:
            query = query.where(audit_events.c.actor_user_id == criteria.actor)
        if criteria.action is not None:
            query = query.where(audit_events.c.action == criteria.action)
        if criteria.target_type is not None:
            query = query.where(audit_events.c.target_type == criteria.target_type)
        if criteria.target_id is not None:
            query = query.where(audit_events.c.target_id == criteria.target_id)
        if criteria.since is not None:
            query = query.where(audit_events.c.occurred_at >= criteria.since)
        if criteria.until is not None:
            query = query.where(audit_events.c.occurred_at < criteria.until)
        if before_id is not None:
            query = query.where(audit_events.c.id < before_id)
        query = query.order_by(audit_events.c.id.desc()).limit(limit)
        return [row_to_record(row) for row in (await self.connection.execute(query)).mappings()]
