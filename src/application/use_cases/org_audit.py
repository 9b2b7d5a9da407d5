"""An org's own audit trail: newest first, keyset pages, never another org's entries."""

import uuid
from dataclasses import dataclass

from application.audit_pages import AuditPage, before_id_of, checked_limit, page_of
from application.authorization import AuthzDeps, PermissionResolver, same_org
from application.ports.audit_query import AuditFilter
from application.use_cases.sessions import Principal

__all__ = ["ListOrgAudit"]


@dataclass
class ListOrgAudit:
    deps: AuthzDeps

    async def __call__(
        self, principal: Principal, org_id: uuid.UUID, criteria: AuditFilter, cursor: str | None, limit: int
    ) -> AuditPage:
        same_org(principal, org_id)
        await PermissionResolver(self.deps).require(principal, "audit_log:read")
        checked_limit(limit)
        before_id = before_id_of(cursor)
        async with self.deps.identity.uow() as uow:
            records = await uow.audit_query.page(org_id, criteria, before_id, limit + 1)
        return page_of(records, limit)
