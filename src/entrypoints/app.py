"""The Litestar app factory and the outer ASGI chain that enforces the HTTP ground rules."""

from typing import Any, cast

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import NotFoundException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

from entrypoints.composition import Container
from entrypoints.controllers.admin_panel import admin_router
from entrypoints.controllers.auth import AuthController
from entrypoints.controllers.authorization import AuthzController
from entrypoints.controllers.bridge_api import BridgeApiController, BridgeAuthzController
from entrypoints.controllers.bridges import BridgeController
from entrypoints.controllers.broker_connections import BrokerCallbackController, BrokerConnectionController
from entrypoints.controllers.egress import MyEgressController
from entrypoints.controllers.forward_auth import ForwardAuthController
from entrypoints.controllers.health import HealthController
from entrypoints.controllers.integration_secrets import IntegrationSecretController
from entrypoints.controllers.me import MeController
from entrypoints.controllers.orgs import OrgController
from entrypoints.controllers.two_factor import TwoFactorController
from entrypoints.controllers.well_known import WellKnownController
from entrypoints.http.admin_allowlist import UNKNOWN_ROUTE_PATH, AdminAllowlist
from entrypoints.http.asgi_types import ASGIApp
from entrypoints.http.authz_check import AuthzCheckFastPath
from entrypoints.http.client_ip import parse_networks
from entrypoints.http.errors import EXCEPTION_HANDLERS
from entrypoints.http.heartbeat_fast_path import HeartbeatFastPath
from entrypoints.http.lifespan import container_lifespan
from entrypoints.http.me_fast_path import MeFastPath
from entrypoints.http.openapi_problems import document_problems
from entrypoints.http.refresh_fast_path import RefreshFastPath
from entrypoints.middleware.admin_gate import AdminGateMiddleware
from entrypoints.middleware.content_type import JsonContentTypeMiddleware
from entrypoints.middleware.origin_check import OriginCheckMiddleware
from entrypoints.middleware.request_context import RequestContextMiddleware
from entrypoints.middleware.security_headers import SecurityHeadersMiddleware
from entrypoints.middleware.timeout import TimeoutMiddleware

API_VERSION = "0.1.0"


def route_handlers() -> list[Any]:
    return [
        HealthController,
        AuthController,
        MeController,
        MyEgressController,
        TwoFactorController,
        WellKnownController,
        OrgController,
        AuthzController,
        BrokerConnectionController,
        BrokerCallbackController,
        IntegrationSecretController,
        BridgeController,
        BridgeApiController,
        BridgeAuthzController,
        ForwardAuthController,
    ]


def admin_allowlist(container: Container) -> AdminAllowlist:
    settings = container.settings
    return AdminAllowlist(settings.effective_admin_allowed_networks, parse_networks(settings.trusted_proxies))


def create_litestar(container: Container) -> Litestar:
    settings = container.settings

    def provide_container() -> Container:
        return container

    litestar = Litestar(
        route_handlers=[*route_handlers(), admin_router(admin_allowlist(container), API_VERSION)],
        dependencies={"container": Provide(provide_container, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,
        cors_config=CORSConfig(
            allow_origins=list(settings.effective_allowed_origins),
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["authorization", "content-type", "x-request-id"],
            expose_headers=["x-request-id", "retry-after"],
            max_age=600,
        ),
        openapi_config=OpenAPIConfig(
            title="Bulwark",
            version=API_VERSION,
            description="Security core: accounts, sessions, 2FA, organisations, broker credentials.",
            path="/schema",
            render_plugins=[JsonRenderPlugin(path=["/", "/openapi.json"])],
        ),
        request_max_body_size=settings.max_body_bytes,
        lifespan=[container_lifespan(container)],
        logging_config=None,
        state=State({"container": container}),
        debug=False,
    )
    check_unknown_route_path(litestar)
    document_problems(litestar)
    return litestar


def check_unknown_route_path(litestar: Litestar) -> None:
    """The admin gate's promise (a hidden admin request gets the unknown-route answer) holds only
    while no route matches UNKNOWN_ROUTE_PATH: refuse to start if one ever does."""
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", None):
        try:
            litestar.asgi_router.handle_routing(path=UNKNOWN_ROUTE_PATH, method=method)
        except NotFoundException:
            continue
        raise RuntimeError(f"a route matches {UNKNOWN_ROUTE_PATH}, which must stay unknown")


def create_asgi(
    container: Container,
    *,
    authz_fast_path: bool = True,
    refresh_fast_path: bool = True,
    me_fast_path: bool = True,
    heartbeat_fast_path: bool = True,
) -> ASGIApp:
    """Outermost first: the admin gate (so a hidden admin request is an unknown route to every
    layer), then request id and security headers, which wrap even the errors produced below.
    Without `authz_fast_path` / `refresh_fast_path` / `me_fast_path` / `heartbeat_fast_path`,
    every check / refresh / profile / heartbeat goes through the framework route (the reference
    each fast path is tested against)."""
    settings = container.settings
    litestar = create_litestar(container)
    app: ASGIApp = cast(ASGIApp, litestar)  # Litestar's scope types are stricter
    assert litestar.cors_config is not None
    if me_fast_path:
        app = MeFastPath(app, container, litestar.cors_config)
    if refresh_fast_path:
        app = RefreshFastPath(app, container, litestar.cors_config)
    if heartbeat_fast_path:
        app = HeartbeatFastPath(app, container, settings.max_body_bytes)
    if authz_fast_path:
        app = AuthzCheckFastPath(app, container, settings.max_body_bytes)
    app = JsonContentTypeMiddleware(app)
    app = OriginCheckMiddleware(app, allowed_origins=settings.effective_allowed_origins)
    app = TimeoutMiddleware(app, seconds=settings.request_timeout_seconds)
    app = SecurityHeadersMiddleware(app, hsts=settings.is_production)
    app = RequestContextMiddleware(app, trusted_proxies=parse_networks(settings.trusted_proxies))
    return AdminGateMiddleware(app, admin_allowlist(container))
