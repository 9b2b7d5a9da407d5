"""For the platform's other services: may this token do X? And the user's own permission view."""

from typing import Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.di import Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody
from litestar.response.base import ASGIResponse

from application.use_cases.sessions import Principal
from entrypoints.controllers.auth import token_response
from entrypoints.controllers.org_views import member_view
from entrypoints.dto.identity import TokenResponse
from entrypoints.dto.orgs import (
    AcceptInvitationRequest,
    AuthzCheckRequest,
    AuthzCheckResponse,
    EffectivePermission,
    MemberView,
    MyPermissions,
    PermissionSource,
    SwitchOrgRequest,
)
from entrypoints.http.auth import authenticated, container_of, provide_principal
from entrypoints.http.authz_check import PATH as AUTHZ_CHECK_PATH
from entrypoints.http.authz_check import authz_answer
from entrypoints.http.dependencies import ContainerDep, PrincipalDep
from entrypoints.http.request_context import request_context


class AuthzController(Controller):
    path = "/api/v1"
    tags = ["authorization"]
    dependencies = {"principal": Provide(provide_principal)}

    @post(
        AUTHZ_CHECK_PATH.removeprefix("/api/v1"),
        status_code=200,
        operation_id="authzCheck",
        summary="One permission (`permission`) or a batch (`permissions`) for the bearer token's user.",
        responses={200: ResponseSpec(AuthzCheckResponse, description="Whether the token's user may")},
    )
    async def check(self, data: JSONBody[AuthzCheckRequest], request: Request[Any, Any, Any]) -> ASGIResponse:
        # Browsers' requests and every error land here; services' plain checks are answered by
        # AuthzCheckFastPath before routing, with the same authz_answer.
        container = container_of(request)
        principal = await authenticated(request, container)
        return ASGIResponse(body=await authz_answer(container, principal, data), media_type=MediaType.JSON)

    @get("/me/permissions", operation_id="myPermissions")
    async def mine(self, principal: PrincipalDep, container: ContainerDep) -> MyPermissions:
        effective = await container.authz.my_permissions(principal)
        return MyPermissions(
            org_id=principal.org_id,
            permissions=[
                EffectivePermission(
                    permission=str(permission),
                    sources=[
                        PermissionSource(
                            role_id=g.role_id,
                            role_name=g.role_name,
                            group_id=g.via_group_id,
                            group_name=g.via_group_name,
                        )
                        for g in effective.sources(permission)
                    ],
                )
                for permission in sorted(effective.permissions, key=str)
            ],
        )

    @post("/invitations/accept", status_code=200, operation_id="acceptInvitation")
    async def accept(
        self,
        data: JSONBody[AcceptInvitationRequest],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Request[Any, Any, Any],
    ) -> MemberView:
        membership = await container.authz.accept_invitation(principal, data.token, request_context(request))
        profile = await container.identity.profile(principal)
        return member_view(membership, profile.user)

    @post(
        "/auth/switch-org",
        status_code=200,
        operation_id="switchOrg",
        summary="Move the session to another org of the user's: new access token, new refresh cookie.",
    )
    async def switch_org(
        self,
        data: JSONBody[SwitchOrgRequest],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Request[Any, Any, Any],
    ) -> Response[TokenResponse]:
        result = await container.authz.switch_org(principal, data.org_id, request_context(request))
        moved = Principal(
            principal.user_id, principal.session_id, data.org_id, principal.platform_role, principal.auth_time
        )
        profile = await container.identity.profile(moved)
        return token_response(container, result.access, result.refresh_token, profile.user)
