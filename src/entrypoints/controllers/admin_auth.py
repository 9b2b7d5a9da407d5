"""The platform admin API's own login, logout and `me` (the admin panel's routes come later and
use `require_admin`)."""

from typing import Any, TypeAlias

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody

from application.use_cases.admin_login import AdminPrincipal
from entrypoints.dto.admin import AdminLoginRequest, AdminMeResponse
from entrypoints.http.admin_auth import admin_token, provide_admin, require_admin
from entrypoints.http.cookies import (
    admin_cookie_header,
    admin_cookie_name,
    cleared_admin_cookie_header,
)
from entrypoints.http.dependencies import ContainerDep
from entrypoints.http.request_context import request_context

AdminDep: TypeAlias = NamedDependency[AdminPrincipal]
_NO_STORE = {"cache-control": "no-store"}


def admin_view(principal: AdminPrincipal) -> AdminMeResponse:
    return AdminMeResponse(
        user_id=principal.user_id,
        email=principal.email,
        display_name=principal.display_name,
        session_id=principal.session_id,
        auth_time=principal.auth_time,
        expires_at=principal.expires_at,
    )


class AdminAuthController(Controller):
    path = "/"  # mounted by the admin router under /api/admin/v1
    tags = ["admin"]

    @post(
        "/login",
        status_code=200,
        operation_id="adminLogin",
        summary="Email, admin password and TOTP code (or a recovery code): the admin session cookie.",
    )
    async def login(
        self, data: JSONBody[AdminLoginRequest], request: Request[Any, Any, Any], container: ContainerDep
    ) -> Response[AdminMeResponse]:
        result = await container.admin.login(
            data.email, data.admin_password, data.totp_code, request_context(request)
        )
        name = admin_cookie_name(container.settings.is_production)
        max_age = (result.session.absolute_expires_at - result.session.created_at).total_seconds()
        cookie = admin_cookie_header(name, result.token, int(max_age))
        return Response(admin_view(result.principal), headers={"set-cookie": cookie, **_NO_STORE})

    @post("/logout", status_code=204, operation_id="adminLogout")
    async def logout(self, request: Request[Any, Any, Any], container: ContainerDep) -> Response[None]:
        await container.admin.logout(admin_token(request), request_context(request))
        name = admin_cookie_name(container.settings.is_production)
        return Response(None, status_code=204, headers={"set-cookie": cleared_admin_cookie_header(name)})

    @get(
        "/me",
        operation_id="adminMe",
        guards=[require_admin],
        dependencies={"admin": Provide(provide_admin)},
    )
    async def me(self, admin: AdminDep) -> Response[AdminMeResponse]:
        return Response(admin_view(admin), headers=_NO_STORE)
