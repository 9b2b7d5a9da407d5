"""The platform-wide audit trail for administrators: list, NDJSON export, chain verification."""

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, TypeAlias
from uuid import UUID

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery, QueryParameter
from litestar.response import Stream

from application.ports.audit_query import AuditFilter
from application.use_cases.admin_login import AdminPrincipal
from domain.audit import AuditRecord
from entrypoints.controllers.admin_views import audit_entry_view, chain_check_view
from entrypoints.dto.admin import AuditVerifyResponse, PlatformAuditList
from entrypoints.http.admin_auth import provide_admin, require_admin
from entrypoints.http.dependencies import ContainerDep
from entrypoints.http.request_context import request_context

AdminDep: TypeAlias = NamedDependency[AdminPrincipal]
CriteriaDep: TypeAlias = NamedDependency[AuditFilter]
NDJSON = "application/x-ndjson"


def audit_filter(
    org: FromQuery[UUID | None] = None,
    actor: FromQuery[UUID | None] = None,
    action: FromQuery[str | None] = None,
    target_type: FromQuery[str | None] = None,
    target_id: FromQuery[str | None] = None,
    source_ip: FromQuery[str | None] = None,
    since: FromQuery[datetime | None] = None,
    until: FromQuery[datetime | None] = None,
) -> AuditFilter:
    """The same filters for the list and the export; `action` matches as a prefix."""
    return AuditFilter(
        actor=actor,
        action_prefix=action,
        target_type=target_type,
        target_id=target_id,
        since=since,
        until=until,
        org_id=org,
        source_ip=source_ip,
    )


async def _ndjson(records: AsyncIterator[AuditRecord]) -> AsyncIterator[bytes]:
    encoder = msgspec.json.Encoder()
    async for record in records:
        yield encoder.encode(audit_entry_view(record)) + b"\n"


class AdminAuditController(Controller):
    path = "/audit"
    tags = ["admin"]
    guards = [require_admin]
    dependencies = {"admin": Provide(provide_admin), "criteria": Provide(audit_filter, sync_to_thread=False)}

    @get("/", operation_id="adminListAudit", summary="Every org's audit entries, newest first.")
    async def list_audit(
        self,
        admin: AdminDep,
        criteria: CriteriaDep,
        container: ContainerDep,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> PlatformAuditList:
        page = await container.admin.audit_list(admin, criteria, cursor, limit)
        return PlatformAuditList([audit_entry_view(r) for r in page.records], page.next_cursor)

    @get(
        "/export",
        operation_id="adminExportAudit",
        summary="The same filters as NDJSON, newest first.",
        media_type=NDJSON,
    )
    async def export(
        self, admin: AdminDep, criteria: CriteriaDep, container: ContainerDep, request: Request[Any, Any, Any]
    ) -> Stream:
        records = await container.admin.audit_export(admin, criteria, request_context(request))
        return Stream(_ndjson(records), media_type=NDJSON, headers={"cache-control": "no-store"})

    @post("/verify", status_code=200, operation_id="adminVerifyAudit", summary="Check the hash chain.")
    async def verify(
        self, admin: AdminDep, container: ContainerDep, request: Request[Any, Any, Any]
    ) -> AuditVerifyResponse:
        return chain_check_view(await container.admin.audit_verify(admin, request_context(request)))
