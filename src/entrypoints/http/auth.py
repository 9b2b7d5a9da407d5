"""Bearer authentication as a Litestar dependency: the token must verify and its session live."""

from typing import Any

from litestar import Request

from application.errors import NotAuthenticated
from application.use_cases.sessions import Principal
from entrypoints.http.dependencies import ContainerDep


def bearer_token(request: Request[Any, Any, Any]) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated(
            "Send the access token as `Authorization: Bearer <token>`.", code="invalid_token"
        )
    return token.strip()


async def provide_principal(request: Request[Any, Any, Any], container: ContainerDep) -> Principal:
    token = bearer_token(request)
    if token is None:
        raise NotAuthenticated("This endpoint needs a bearer token.")
    principal = await container.identity.authenticate(token)
    request.scope.setdefault("state", {})["principal"] = principal  # type: ignore[typeddict-item]
    return principal


async def provide_optional_principal(
    request: Request[Any, Any, Any], container: ContainerDep
) -> Principal | None:
    token = bearer_token(request)
    if token is None:
        return None
    return await container.identity.authenticate(token)
