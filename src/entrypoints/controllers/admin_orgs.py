"""The admin panel's organisations, under its prefix (see admin_panel): only an admin session
opens them (`require_admin`); a user's bearer token never does, whatever its platform role."""

from uuid import UUID

from litestar import Controller, get, post
from litestar.params import FromPath, FromQuery

from domain.orgs import OrgStatus
from entrypoints.controllers.admin_org_views import org_detail, org_summary
from entrypoints.dto.admin_orgs import AdminOrgDetail, AdminOrgList, AdminOrgSummary
from entrypoints.http.admin_auth import require_admin
from entrypoints.http.admin_panel_dependencies import (
    ADMIN_PANEL_DEPENDENCIES,
    AdminDep,
    ContextDep,
    PanelDep,
)


class AdminOrgController(Controller):
    path = "/orgs"
    tags = ["admin"]
    guards = [require_admin]
    dependencies = ADMIN_PANEL_DEPENDENCIES

    @get("/", operation_id="adminListOrgs", summary="Every organisation, oldest first (created_at, id).")
    async def list_orgs(
        self,
        admin: AdminDep,
        panel: PanelDep,
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int] = 50,
    ) -> AdminOrgList:
        listing = await panel.list_orgs(admin, cursor, limit)
        return AdminOrgList(items=[org_summary(o) for o in listing.orgs], next_cursor=listing.next_cursor)

    @get("/{org_id:uuid}", operation_id="adminGetOrg")
    async def get_org(self, org_id: FromPath[UUID], admin: AdminDep, panel: PanelDep) -> AdminOrgDetail:
        overview = await panel.get_org(admin, org_id)
        return org_detail(overview.org, overview.members)

    @post("/{org_id:uuid}/disable", status_code=200, operation_id="adminDisableOrg")
    async def disable(
        self, org_id: FromPath[UUID], admin: AdminDep, panel: PanelDep, ctx: ContextDep
    ) -> AdminOrgSummary:
        return org_summary(await panel.set_org_status(admin, org_id, OrgStatus.DISABLED, ctx))

    @post("/{org_id:uuid}/enable", status_code=200, operation_id="adminEnableOrg")
    async def enable(
        self, org_id: FromPath[UUID], admin: AdminDep, panel: PanelDep, ctx: ContextDep
    ) -> AdminOrgSummary:
        return org_summary(await panel.set_org_status(admin, org_id, OrgStatus.ACTIVE, ctx))
