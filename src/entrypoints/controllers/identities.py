"""The signed-in user's linked sign-in identities (Google, Microsoft, the generic provider)."""

from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import Provide
from litestar.params import FromPath, JSONBody

from domain.sso import SSO_STATE_TTL
from entrypoints.controllers.identity_link_views import identity_view
from entrypoints.dto.sso import IdentityList, LinkIdentityRequest, LinkStarted
from entrypoints.http.auth import provide_principal
from entrypoints.http.cookies import sso_flow_cookie_header
from entrypoints.http.dependencies import ContainerDep, PrincipalDep
from entrypoints.http.request_context import request_context

Req = Request[Any, Any, Any]


class IdentityController(Controller):
    path = "/api/v1/me/identities"
    tags = ["me"]
    dependencies = {"principal": Provide(provide_principal)}

    @get("", operation_id="listIdentities")
    async def list_identities(self, principal: PrincipalDep, container: ContainerDep) -> IdentityList:
        found = await container.sso.list_identities(principal)
        return IdentityList(identities=[identity_view(i) for i in found])

    @post(
        "/{provider:str}/link",
        status_code=200,
        operation_id="linkIdentity",
        summary="Step-up; starts the SSO flow in link mode (the browser goes to authorization_url).",
    )
    async def link(
        self,
        provider: FromPath[str],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
        data: JSONBody[LinkIdentityRequest | None] = None,
    ) -> Response[LinkStarted]:
        started = await container.sso.start_link(
            principal, provider, data.return_to if data else None, request_context(request)
        )
        ttl = int(SSO_STATE_TTL.total_seconds())
        return Response(
            LinkStarted(authorization_url=started.authorization_url),
            headers={
                "set-cookie": sso_flow_cookie_header(started.browser_binding, ttl),
                "cache-control": "no-store",
            },
        )

    @delete("/{identity_id:uuid}", status_code=204, operation_id="unlinkIdentity", summary="Step-up.")
    async def unlink(
        self, identity_id: FromPath[UUID], principal: PrincipalDep, container: ContainerDep, request: Req
    ) -> None:
        await container.sso.unlink(principal, identity_id, request_context(request))
