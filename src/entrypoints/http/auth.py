"""Bearer authentication (a Litestar dependency and a helper for guards): the token must verify
and its session must be live. Resolved once per request and kept in the scope's state."""

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection

from application.errors import NotAuthenticated
from application.use_cases.sessions import Principal
from entrypoints.composition import Container
from entrypoints.http.dependencies import ContainerDep


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    # Straight from the raw scope: building Litestar's header view costs more than the rest of
    # a cached token check.
    header = next((v for k, v in connection.scope["headers"] if k == b"authorization"), None)
    if header is None:
        return None
    scheme, _, token = header.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated(
            "Send the access token as `Authorization: Bearer <token>`.", code="invalid_token"
        )
    return token.strip()


async def authenticated(connection: ASGIConnection[Any, Any, Any, Any], container: Container) -> Principal:
    state = connection.scope.get("state")  # set by RequestContextMiddleware on every request
    if state is None:
        state = connection.scope["state"] = {}  # type: ignore[typeddict-unknown-key]
    known = state.get("principal")
    if isinstance(known, Principal):
        return known
    token = bearer_token(connection)
    if token is None:
        raise NotAuthenticated("This endpoint needs a bearer token.")
    principal = await container.identity.authenticate(token)
    state["principal"] = principal
    return principal


def container_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Container:
    """The composition root's container, without a dependency-injection round (hot paths)."""
    container: Container = connection.app.state["container"]
    return container


async def provide_principal(request: Request[Any, Any, Any], container: ContainerDep) -> Principal:
    return await authenticated(request, container)


async def provide_optional_principal(
    request: Request[Any, Any, Any], container: ContainerDep
) -> Principal | None:
    if bearer_token(request) is None:
        return None
    return await authenticated(request, container)
