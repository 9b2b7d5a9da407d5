"""The admin panel's administrators (list, promote, demote, unlock) and the promoted
administrator's enrolment (the one route here without an admin session: the mailed link is the
credential), under the admin router's prefix and allowlist."""

from typing import Any, TypeAlias
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from application.use_cases.admin_login import AdminPrincipal
from entrypoints.controllers.admin_views import administrator_view
from entrypoints.dto.admin import (
    AdminEnrolmentRequest,
    AdminEnrolmentResponse,
    AdministratorList,
    AdministratorResponse,
    AdminUnlockResponse,
    PromoteAdminRequest,
)
from entrypoints.http.admin_auth import provide_admin, require_admin
from entrypoints.http.dependencies import ContainerDep
from entrypoints.http.request_context import request_context

AdminDep: TypeAlias = NamedDependency[AdminPrincipal]
_NO_STORE = {"cache-control": "no-store"}


class AdministratorsController(Controller):
    path = "/admins"
    tags = ["admin"]
    guards = [require_admin]
    dependencies = {"admin": Provide(provide_admin)}

    @get("/", operation_id="adminListAdministrators")
    async def list_administrators(self, admin: AdminDep, container: ContainerDep) -> AdministratorList:
        views = await container.admin.administrators(admin)
        return AdministratorList([administrator_view(v) for v in views])

    @post(
        "/",
        status_code=201,
        operation_id="adminPromoteAdministrator",
        summary="Promote an existing account: pending until its owner follows the mailed link.",
    )
    async def promote(
        self,
        data: JSONBody[PromoteAdminRequest],
        admin: AdminDep,
        container: ContainerDep,
        request: Request[Any, Any, Any],
    ) -> AdministratorResponse:
        view = await container.admin.promote(admin, data.user_id, data.email, request_context(request))
        return administrator_view(view)

    @delete("/{user_id:uuid}", status_code=204, operation_id="adminDemoteAdministrator")
    async def demote(
        self,
        user_id: FromPath[UUID],
        admin: AdminDep,
        container: ContainerDep,
        request: Request[Any, Any, Any],
    ) -> None:
        await container.admin.demote(admin, user_id, request_context(request))

    @post("/{user_id:uuid}/unlock", status_code=200, operation_id="adminUnlockAdministrator")
    async def unlock(
        self,
        user_id: FromPath[UUID],
        admin: AdminDep,
        container: ContainerDep,
        request: Request[Any, Any, Any],
    ) -> AdminUnlockResponse:
        lifted = await container.admin.unlock_administrator(admin, user_id, request_context(request))
        return AdminUnlockResponse(unlocked=lifted)


class AdminEnrolmentController(Controller):
    path = "/enrolment"
    tags = ["admin"]

    @post(
        "/",
        status_code=200,
        operation_id="adminCompleteEnrolment",
        summary="The mailed token and a new admin password: the TOTP URI and recovery codes, once.",
    )
    async def enrol(
        self, data: JSONBody[AdminEnrolmentRequest], container: ContainerDep, request: Request[Any, Any, Any]
    ) -> Response[AdminEnrolmentResponse]:
        enrolment = await container.admin.enrol(data.token, data.admin_password, request_context(request))
        body = AdminEnrolmentResponse(enrolment.user_id, enrolment.otpauth_uri, enrolment.recovery_codes)
        return Response(body, headers=_NO_STORE)
