"""The platform admin panel's API: every admin route, under /api/admin/v1, with its own OpenAPI
document. None of it appears in the public schema; all of it sits behind the network allowlist
(the ASGI gate in front of the app, and this router's guard behind it)."""

import functools
from typing import Any

from litestar import Litestar, Response, Router, get
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.serialization import encode_json

from entrypoints.controllers.admin_administrators import AdminEnrolmentController, AdministratorsController
from entrypoints.controllers.admin_audit import AdminAuditController
from entrypoints.controllers.admin_auth import AdminAuthController
from entrypoints.controllers.admin_orgs import AdminOrgController
from entrypoints.controllers.admin_user_deletion import AdminUserDeletionController
from entrypoints.controllers.admin_users import AdminUserController
from entrypoints.controllers.egress import AdminEgressController
from entrypoints.http.admin_allowlist import ADMIN_PREFIX, AdminAllowlist, admin_network_guard
from entrypoints.http.openapi_problems import document_problems

ADMIN_CONTROLLERS: tuple[type, ...] = (
    AdminAuthController,
    AdminOrgController,
    AdminUserController,
    AdminUserDeletionController,
    AdministratorsController,
    AdminEnrolmentController,
    AdminAuditController,
    AdminEgressController,
)
OPENAPI_JSON = "application/vnd.oai.openapi+json"  # what the public /schema answers with


@functools.cache
def admin_openapi_json(api_version: str) -> bytes:
    """The admin routes' OpenAPI document, from an app that holds only them (built once, on the
    first request: it is the same for every app of this process)."""
    documented = Litestar(
        route_handlers=[Router(path=ADMIN_PREFIX, route_handlers=list(ADMIN_CONTROLLERS))],
        # The handlers declare the container dependency; documenting them never calls it.
        dependencies={"container": Provide(lambda: None, sync_to_thread=False)},
        openapi_config=OpenAPIConfig(
            title="Bulwark admin panel",
            version=api_version,
            description="Platform administration. Reachable only from BULWARK_ADMIN_ALLOWED_NETWORKS.",
        ),
        logging_config=None,
    )
    document_problems(documented)
    return encode_json(documented.openapi_schema.to_schema())


def admin_router(allowlist: AdminAllowlist, api_version: str) -> Router:
    @get("/schema", media_type=OPENAPI_JSON, sync_to_thread=False, operation_id="adminOpenApi")
    def admin_schema() -> Response[Any]:
        return Response(content=admin_openapi_json(api_version), media_type=OPENAPI_JSON)

    return Router(
        path=ADMIN_PREFIX,
        route_handlers=[*ADMIN_CONTROLLERS, admin_schema],
        guards=[admin_network_guard(allowlist)],
        include_in_schema=False,  # the public /schema does not mention the panel
    )
