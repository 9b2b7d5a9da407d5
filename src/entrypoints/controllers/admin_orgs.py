"""Platform administrators' org controls, under the admin panel's prefix (see admin_panel)."""

from typing import Any
from uuid import UUID

from litestar import Controller, Request, post
from litestar.di import Provide
from litestar.params import FromPath

from domain.orgs import OrgStatus
from entrypoints.controllers.org_views import org_detail
from entrypoints.dto.orgs import OrgDetail
from entrypoints.http.auth import provide_principal
from entrypoints.http.dependencies import ContainerDep, PrincipalDep
from entrypoints.http.request_context import request_context


class AdminOrgController(Controller):
    path = "/orgs"
    tags = ["admin"]
    dependencies = {"principal": Provide(provide_principal)}

    @post("/{org_id:uuid}/disable", status_code=200, operation_id="adminDisableOrg")
    async def disable(
        self,
        org_id: FromPath[UUID],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Request[Any, Any, Any],
    ) -> OrgDetail:
        org = await container.authz.set_org_status(
            principal, org_id, OrgStatus.DISABLED, request_context(request)
        )
        return org_detail(org)

    @post("/{org_id:uuid}/enable", status_code=200, operation_id="adminEnableOrg")
    async def enable(
        self,
        org_id: FromPath[UUID],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Request[Any, Any, Any],
    ) -> OrgDetail:
        org = await container.authz.set_org_status(
            principal, org_id, OrgStatus.ACTIVE, request_context(request)
        )
        return org_detail(org)
