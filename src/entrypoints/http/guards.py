"""Authorization guards the controllers attach. The decisions are the application's; these only
find the principal, the org named in the path, and ask."""

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from application.authorization import same_org
from application.errors import NotFound
from application.use_cases.sessions import Principal
from entrypoints.composition import Container
from entrypoints.http.auth import authenticated

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


def _container(connection: ASGIConnection[Any, Any, Any, Any]) -> Container:
    container: Container = connection.app.state["container"]
    return container


async def _principal_in_path_org(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    principal = await authenticated(connection, _container(connection))
    org_id = connection.path_params.get("org_id")
    if org_id is not None:
        # Another org's id looks exactly like a missing one, before any permission is consulted.
        try:
            same_org(principal, org_id if isinstance(org_id, UUID) else UUID(str(org_id)))
        except ValueError:
            raise NotFound("No such organisation.") from None
    return principal


def require_permission(permission: str) -> Guard:
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = await _principal_in_path_org(connection)
        await _container(connection).authz.resolver.require(principal, permission)

    guard.__name__ = f"require_permission({permission})"
    return guard


async def require_org_member(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    principal = await _principal_in_path_org(connection)
    if not await _container(connection).authz.resolver.is_member(principal):
        raise NotFound("No such organisation.")


async def require_org_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    principal = await _principal_in_path_org(connection)
    await _container(connection).authz.resolver.require_org_admin(principal)


async def require_write(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    principal = await _principal_in_path_org(connection)
    await _container(connection).authz.resolver.require_write(principal)
