"""The signed-in user's own account and sessions."""

from typing import Any
from uuid import UUID

from litestar import Controller, MediaType, Request, Response, delete, get, patch, post
from litestar.di import Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.response.base import ASGIResponse

from entrypoints.dto.identity import (
    ChangePasswordRequest,
    CloseAccountRequest,
    MeResponse,
    SessionsResponse,
    SessionView,
    UpdateMeRequest,
)
from entrypoints.http.auth import authenticated, container_of, provide_principal
from entrypoints.http.cookies import cleared_refresh_cookie_header, refresh_cookie_name
from entrypoints.http.dependencies import ContainerDep, PrincipalDep
from entrypoints.http.me_answer import me_body
from entrypoints.http.request_context import request_context


class MeController(Controller):
    path = "/api/v1/me"
    tags = ["me"]
    dependencies = {"principal": Provide(provide_principal)}

    @get(
        "",
        operation_id="getMe",
        responses={200: ResponseSpec(MeResponse, description="The caller's profile")},
    )
    async def me(self, request: Request[Any, Any, Any]) -> ASGIResponse:
        # Called on every SPA page: resolved by hand rather than by dependency injection, and the
        # encoded body is reused for as long as the worker's profile cache returns the same profile.
        container = container_of(request)
        body = await me_body(container, await authenticated(request, container))
        # Already-encoded bytes go out as they are, without Litestar's response conversion.
        return ASGIResponse(body=body, media_type=MediaType.JSON)

    @patch(
        "",
        operation_id="updateMe",
        responses={200: ResponseSpec(MeResponse, description="The caller's profile, changed")},
    )
    async def update_me(
        self,
        data: JSONBody[UpdateMeRequest],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Request[Any, Any, Any],
    ) -> ASGIResponse:
        await container.identity.update_profile(principal, data.display_name, request_context(request))
        return ASGIResponse(body=await me_body(container, principal), media_type=MediaType.JSON)

    @delete(
        "",
        status_code=204,
        operation_id="closeMyAccount",
        summary="Close the account for good: password (and code when 2FA is on), after a recent sign-in.",
    )
    async def close_account(
        self,
        data: JSONBody[CloseAccountRequest],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Request[Any, Any, Any],
    ) -> Response[None]:
        await container.closures.close_own_account(
            principal, data.password, data.code, request_context(request)
        )
        name = refresh_cookie_name(container.settings.is_production)
        return Response(None, status_code=204, headers={"set-cookie": cleared_refresh_cookie_header(name)})

    @get("/sessions", operation_id="listSessions")
    async def sessions(self, principal: PrincipalDep, container: ContainerDep) -> SessionsResponse:
        live = await container.identity.list_sessions(principal)
        return SessionsResponse(
            sessions=[
                SessionView(
                    id=s.id,
                    created_at=s.created_at,
                    last_used_at=s.last_used_at,
                    ip=s.ip,
                    user_agent=s.user_agent,
                    current=s.id == principal.session_id,
                )
                for s in live
            ]
        )

    @delete("/sessions/{session_id:uuid}", status_code=204, operation_id="revokeSession")
    async def revoke(
        self,
        session_id: FromPath[UUID],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Request[Any, Any, Any],
    ) -> None:
        await container.identity.revoke_session(principal, session_id, request_context(request))

    @delete("/sessions", status_code=204, operation_id="revokeOtherSessions")
    async def revoke_others(
        self, principal: PrincipalDep, container: ContainerDep, request: Request[Any, Any, Any]
    ) -> None:
        await container.identity.revoke_other_sessions(principal, request_context(request))

    @post("/password", status_code=204, operation_id="changePassword")
    async def change_password(
        self,
        data: JSONBody[ChangePasswordRequest],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Request[Any, Any, Any],
    ) -> None:
        await container.identity.change_password(
            principal, data.current_password, data.new_password, request_context(request)
        )
