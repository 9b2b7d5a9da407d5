"""`GET /api/v1/authz/forward`: forward-auth in the conventions of nginx `auth_request`, Traefik
ForwardAuth and Envoy ext_authz (HTTP). The gateway forwards the original request's headers
(its method and URI in `X-Forwarded-Method`/`X-Forwarded-Uri` or `X-Original-URI`), may name a
permission in `X-Bulwark-Permission`, and gets 200 with `X-Bulwark-User`, `X-Bulwark-Org` and
`X-Bulwark-Bridge`, or 401/403. Only the status and those headers matter to a gateway."""

from typing import Any

from litestar import Controller, Request, Response, get

from application.errors import NotAuthenticated
from entrypoints.http.dependencies import ContainerDep
from entrypoints.http.request_context import request_context

Req = Request[Any, Any, Any]


def _one(request: Req, name: bytes) -> str | None:
    values = [v for k, v in request.scope["headers"] if k == name]
    if len(values) > 1:
        raise NotAuthenticated(f"More than one {name.decode()} header.", code="ambiguous_credentials")
    return values[0].decode("latin-1").strip() if values else None


def _bearer(request: Req) -> str | None:
    header = _one(request, b"authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated(
            "Send the access token as `Authorization: Bearer <token>`.", code="invalid_token"
        )
    return token.strip()


class ForwardAuthController(Controller):
    path = "/api/v1/authz"
    tags = ["authorization"]

    @get("/forward", operation_id="authzForward", summary="Forward-auth for gateways.")
    async def forward(self, container: ContainerDep, request: Req) -> Response[dict[str, str]]:
        identity = await container.forward_auth(
            _bearer(request),
            _one(request, b"x-api-key"),
            _one(request, b"x-bulwark-permission"),
            request_context(request).ip,
        )
        headers = {"x-bulwark-org": str(identity.org_id), "cache-control": "no-store"}
        if identity.user_id is not None:
            headers["x-bulwark-user"] = str(identity.user_id)
        if identity.bridge_id is not None:
            headers["x-bulwark-bridge"] = str(identity.bridge_id)
        return Response({"status": "ok"}, headers=headers)
