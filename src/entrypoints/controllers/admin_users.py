"""The admin panel's accounts, under its prefix (see admin_panel): only an admin session opens
them (`require_admin`)."""

from uuid import UUID

from litestar import Controller, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody

from application.use_cases.admin_users import UserFilter
from entrypoints.controllers.admin_user_views import user_detail, user_summary
from entrypoints.dto.admin_users import (
    AdminUserDetail,
    AdminUserList,
    AdminUserSummary,
    LoggedOutEverywhere,
    SetPlanRequest,
)
from entrypoints.http.admin_auth import require_admin
from entrypoints.http.admin_panel_dependencies import (
    ADMIN_PANEL_DEPENDENCIES,
    AdminDep,
    ContextDep,
    PanelDep,
)


class AdminUserController(Controller):
    path = "/users"
    tags = ["admin"]
    guards = [require_admin]
    dependencies = ADMIN_PANEL_DEPENDENCIES

    @get("/", operation_id="adminListUsers", summary="Accounts by email prefix, status, plan, org.")
    async def list_users(
        self,
        admin: AdminDep,
        panel: PanelDep,
        email: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        plan: FromQuery[str | None] = None,
        org: FromQuery[UUID | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int] = 50,
    ) -> AdminUserList:
        page = await panel.list_users(admin, UserFilter(email, status, plan, org), cursor, limit)
        return AdminUserList(
            items=[user_summary(u, panel.plans) for u in page.users], next_cursor=page.next_cursor
        )

    @get("/{user_id:uuid}", operation_id="adminGetUser")
    async def get_user(self, user_id: FromPath[UUID], admin: AdminDep, panel: PanelDep) -> AdminUserDetail:
        return user_detail(await panel.get_user(admin, user_id))

    @post("/{user_id:uuid}/pause", status_code=200, operation_id="adminPauseUser")
    async def pause(
        self, user_id: FromPath[UUID], admin: AdminDep, panel: PanelDep, ctx: ContextDep
    ) -> AdminUserSummary:
        user = await panel.pause_user(admin, user_id, ctx)
        return user_summary(user, panel.plans)

    @post("/{user_id:uuid}/unpause", status_code=200, operation_id="adminUnpauseUser")
    async def unpause(
        self, user_id: FromPath[UUID], admin: AdminDep, panel: PanelDep, ctx: ContextDep
    ) -> AdminUserSummary:
        user = await panel.unpause_user(admin, user_id, ctx)
        return user_summary(user, panel.plans)

    @post("/{user_id:uuid}/logout-everywhere", status_code=200, operation_id="adminLogoutUserEverywhere")
    async def logout_everywhere(
        self, user_id: FromPath[UUID], admin: AdminDep, panel: PanelDep, ctx: ContextDep
    ) -> LoggedOutEverywhere:
        return LoggedOutEverywhere(await panel.logout_user_everywhere(admin, user_id, ctx))

    @put("/{user_id:uuid}/plan", status_code=200, operation_id="adminSetUserPlan")
    async def set_plan(
        self,
        user_id: FromPath[UUID],
        data: JSONBody[SetPlanRequest],
        admin: AdminDep,
        panel: PanelDep,
        ctx: ContextDep,
    ) -> AdminUserSummary:
        user = await panel.set_user_plan(admin, user_id, data.plan, ctx)
        return user_summary(user, panel.plans)
