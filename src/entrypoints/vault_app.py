"""The credential vault's app: a second entrypoint on the same core, with the same error mapping,
request context, security headers and timeout as the public API, and none of its browser rules
(no CORS, no cookies): its callers are internal workers."""

from typing import cast

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide

from entrypoints.composition import VaultContainer
from entrypoints.controllers.vault import VaultController, VaultHealthController
from entrypoints.http.asgi_types import ASGIApp
from entrypoints.http.client_ip import parse_networks
from entrypoints.http.errors import EXCEPTION_HANDLERS
from entrypoints.http.lifespan import container_lifespan
from entrypoints.middleware.request_context import RequestContextMiddleware
from entrypoints.middleware.security_headers import SecurityHeadersMiddleware
from entrypoints.middleware.timeout import TimeoutMiddleware


def create_vault_litestar(container: VaultContainer) -> Litestar:
    def provide_container() -> VaultContainer:
        return container

    return Litestar(
        route_handlers=[VaultController, VaultHealthController],
        dependencies={"container": Provide(provide_container, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=container.settings.max_body_bytes,
        lifespan=[container_lifespan(container)],
        logging_config=None,
        openapi_config=None,
        state=State({"container": container}),
        debug=False,
    )


def create_vault_asgi(container: VaultContainer) -> ASGIApp:
    settings = container.settings
    app: ASGIApp = cast(ASGIApp, create_vault_litestar(container))
    app = TimeoutMiddleware(app, seconds=settings.request_timeout_seconds)
    app = SecurityHeadersMiddleware(app, hsts=settings.is_production)
    return RequestContextMiddleware(app, trusted_proxies=parse_networks(settings.trusted_proxies))
