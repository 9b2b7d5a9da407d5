"""Admin authentication for the admin routes: the admin session cookie, and nothing else.

A request to an admin route that carries an `Authorization` header is refused outright: user
tokens never open admin routes, and the origin check (which lets bearer requests through without
an Origin) must not be talked out of checking a request that really rides on the cookie."""

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from application.ports.admin_tokens import InvalidAdminToken
from application.use_cases.admin_login import AdminPrincipal
from entrypoints.http.auth import container_of
from entrypoints.http.cookies import admin_cookie_name, refresh_cookie_in


def admin_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The admin cookie's value, read strictly (see `refresh_cookie_in`)."""
    name = admin_cookie_name(container_of(connection).settings.is_production)
    return refresh_cookie_in(connection.scope["headers"], name)


async def authenticated_admin(connection: ASGIConnection[Any, Any, Any, Any]) -> AdminPrincipal:
    state = connection.scope.get("state")
    if state is None:
        state = connection.scope["state"] = {}  # type: ignore[typeddict-unknown-key]
    known = state.get("admin_principal")
    if isinstance(known, AdminPrincipal):
        return known
    if any(name == b"authorization" for name, _ in connection.scope["headers"]):
        raise InvalidAdminToken("Admin routes take the admin session cookie, never a bearer token.")
    token = admin_token(connection)
    if not token:
        raise InvalidAdminToken("This endpoint needs an admin session: POST /api/admin/v1/login.")
    principal = await container_of(connection).admin.authenticate(token)
    state["admin_principal"] = principal
    return principal


async def require_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard for every admin route but login and logout."""
    await authenticated_admin(connection)


async def provide_admin(request: Request[Any, Any, Any]) -> AdminPrincipal:
    """The same check as a dependency, for handlers that need to know who the admin is."""
    return await authenticated_admin(request)
