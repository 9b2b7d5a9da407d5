"""What the admin panel's controllers ask for: the admin session's principal (`provide_admin`),
the panel's use cases and the request's context."""

from typing import Any, TypeAlias

from litestar import Request
from litestar.di import NamedDependency, Provide

from application.admin_principal import AdminPrincipal
from application.identity import RequestContext
from entrypoints.composition import AdminPanelApi
from entrypoints.http.admin_auth import provide_admin
from entrypoints.http.dependencies import ContainerDep
from entrypoints.http.request_context import request_context

AdminDep: TypeAlias = NamedDependency[AdminPrincipal]
PanelDep: TypeAlias = NamedDependency[AdminPanelApi]
ContextDep: TypeAlias = NamedDependency[RequestContext]


def provide_panel(container: ContainerDep) -> AdminPanelApi:
    return container.admin_panel


def provide_context(request: Request[Any, Any, Any]) -> RequestContext:
    return request_context(request)


ADMIN_PANEL_DEPENDENCIES = {
    "admin": Provide(provide_admin),
    "panel": Provide(provide_panel, sync_to_thread=False),
    "ctx": Provide(provide_context, sync_to_thread=False),
}
