"""An org's own audit trail: newest first, keyset pages, never another org's entries."""

import uuid
from dataclasses import dataclass

from application.authorization import AuthzDeps, PermissionResolver, same_org
from application.errors import InvalidInput
from application.ports.audit_query import AuditFilter
from application.use_cases.sessions import Principal
from domain.audit import AuditRecord


@dataclass(frozen=True)
class AuditPage:
    records: list[AuditRecord]
    next_cursor: str | None


@dataclass
class ListOrgAudit:
    deps: AuthzDeps

    async def __call__(
        self, principal: Principal, org_id: uuid.UUID, criteria: AuditFilter, cursor: str | None, limit: int
    ) -> AuditPage:
        same_org(principal, org_id)
        await PermissionResolver(self.deps).require(principal, "audit_log:read")
        if not 1 <= limit <= 200:
            raise InvalidInput("limit is 1 to 200.", field="limit")
        before_id: int | None = None
        if cursor:
            # An audit id is a 63-bit integer: anything else (a 23-digit number, "²") is no cursor.
            if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):
                raise InvalidInput("Unknown cursor.", field="cursor")
            before_id = int(cursor)
        async with self.deps.identity.uow() as uow:
            records = await uow.audit_query.page(org_id, criteria, before_id, limit + 1)
        more = len(records) > limit
        records = records[:limit]
        return AuditPage(records, str(records[-1].id) if more and records else None)
