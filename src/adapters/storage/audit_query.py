"""Reading audit entries, newest first, keyset-paginated: an org's own (never another org's), or
the whole platform's for platform administrators. `audit_events` has no row-level security (its
rows are guarded by append-only triggers and the hash chain), so the service role reads it as is.
Each entry comes with its chain link, or none while it waits for the sealer."""

from uuid import UUID

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.storage.audit_log import row_to_record
from adapters.storage.tables import audit_chain_links, audit_events
from application.ports.audit_query import AuditFilter
from domain.audit import AuditRecord


def _filtered(query: Select[tuple[object, ...]], criteria: AuditFilter) -> Select[tuple[object, ...]]:
    columns = audit_events.c
    if criteria.actor is not None:
        query = query.where(columns.actor_user_id == criteria.actor)
    if criteria.action is not None:
        query = query.where(columns.action == criteria.action)
    if criteria.action_prefix is not None:
        # Escaped: a `%` or `_` in the prefix is a character, not a wildcard.
        query = query.where(columns.action.startswith(criteria.action_prefix, autoescape=True))
    if criteria.target_type is not None:
        query = query.where(columns.target_type == criteria.target_type)
    if criteria.target_id is not None:
        query = query.where(columns.target_id == criteria.target_id)
    if criteria.org_id is not None:
        query = query.where(columns.org_id == criteria.org_id)
    if criteria.source_ip is not None:
        query = query.where(columns.source_ip == criteria.source_ip)
    if criteria.since is not None:
        query = query.where(columns.occurred_at >= criteria.since)
    if criteria.until is not None:
        query = query.where(columns.occurred_at < criteria.until)
    return query


# Every entry column and its link's hashes (NULL until sealed).
_WITH_LINKS = select(audit_events, audit_chain_links.c.prev_hash, audit_chain_links.c.hash).select_from(
    audit_events.outerjoin(audit_chain_links, audit_chain_links.c.id == audit_events.c.id)
)


class SqlAuditQuery:
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def page(
        self, org_id: UUID, criteria: AuditFilter, before_id: int | None, limit: int
    ) -> list[AuditRecord]:
        query = _WITH_LINKS.where(audit_events.c.org_id == org_id)
        return await self._newest_first(_filtered(query, criteria), before_id, limit)

    async def page_all(self, criteria: AuditFilter, before_id: int | None, limit: int) -> list[AuditRecord]:
        return await self._newest_first(_filtered(_WITH_LINKS, criteria), before_id, limit)

    async def _newest_first(
        self, query: Select[tuple[object, ...]], before_id: int | None, limit: int
    ) -> list[AuditRecord]:
        if before_id is not None:
            query = query.where(audit_events.c.id < before_id)
        query = query.order_by(audit_events.c.id.desc()).limit(limit)
        return [row_to_record(row) for row in (await self.connection.execute(query)).mappings()]
