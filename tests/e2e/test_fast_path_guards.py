"""The fast paths answer four routes without the framework, so whatever the framework would run
for those routes must be known here. This test pins it: each fast-pathed route's guards,
middleware, hooks, dependencies and body limit, the app's own layers, and the ASGI chain around
the fast paths. Adding a guard, hook or middleware to one of them fails this test until the
fast path does the same work (or is dropped) -- see `entrypoints/http/fast_path.py`."""

from typing import Any

import pytest
from litestar import Litestar

from entrypoints.app import create_asgi, create_litestar
from entrypoints.composition import Container
from entrypoints.http.authz_check import AuthzCheckFastPath
from entrypoints.http.heartbeat_fast_path import HeartbeatFastPath
from entrypoints.http.me_fast_path import MeFastPath
from entrypoints.http.refresh_fast_path import RefreshFastPath
from entrypoints.middleware.admin_gate import AdminGateMiddleware
from entrypoints.middleware.content_type import JsonContentTypeMiddleware
from entrypoints.middleware.origin_check import OriginCheckMiddleware
from entrypoints.middleware.request_context import RequestContextMiddleware
from entrypoints.middleware.security_headers import SecurityHeadersMiddleware
from entrypoints.middleware.timeout import TimeoutMiddleware
from tests.e2e.conftest import Service

# (method, path): what the handler resolves to, as the fast path knows it. `None` for the body
# limit means the app's own (`max_body_bytes`), which the fast paths that read a body obey.
FAST_PATHED = {
    ("GET", "/api/v1/me"): {"dependencies": {"container", "principal"}},
    ("POST", "/api/v1/auth/refresh"): {"dependencies": {"container"}},
    ("POST", "/api/v1/authz/check"): {"dependencies": {"container", "principal"}},
    ("POST", "/api/bridge/v1/heartbeat"): {"dependencies": {"container"}},
}


def handler_of(app: Litestar, method: str, path: str) -> Any:
    for route in app.routes:
        if route.path == path:
            found = route.route_handler_map.get(method)  # type: ignore[union-attr]
            if found is not None:
                return found[0] if isinstance(found, tuple) else found
    raise AssertionError(f"no {method} {path}")


@pytest.mark.parametrize(("method", "path"), sorted(FAST_PATHED))
def test_a_fast_pathed_route_runs_nothing_its_fast_path_does_not(
    service: Service, method: str, path: str
) -> None:
    app = create_litestar(service.container)
    handler = handler_of(app, method, path)
    assert handler.resolve_guards() == [], "a guard here must run in the fast path too"
    assert list(handler.resolve_middleware()) == [], "a middleware here must run in the fast path too"
    assert handler.resolve_before_request() is None and handler.resolve_after_response() is None
    assert set(handler.resolve_dependencies()) == FAST_PATHED[(method, path)]["dependencies"]
    assert not handler.resolve_response_headers() and not handler.resolve_response_cookies()
    assert handler.resolve_request_max_body_size() in (None, service.container.settings.max_body_bytes)


def test_the_app_itself_adds_no_layer_the_fast_paths_skip(service: Service) -> None:
    app = create_litestar(service.container)
    assert app.middleware == [] and app.guards == []
    assert app.before_request is None and app.after_request is None and app.after_response is None
    assert app.before_send == [] and app.response_headers == [] and app.response_cookies == []


def chain(app: Any) -> list[type]:
    layers: list[type] = []
    while not isinstance(app, Litestar):
        layers.append(type(app))
        app = app.app
    return layers


def test_the_fast_paths_sit_inside_every_ground_rule(service: Service) -> None:
    container: Container = service.container
    assert chain(create_asgi(container)) == [
        AdminGateMiddleware,
        RequestContextMiddleware,
        SecurityHeadersMiddleware,
        TimeoutMiddleware,
        OriginCheckMiddleware,
        JsonContentTypeMiddleware,
        AuthzCheckFastPath,
        HeartbeatFastPath,
        RefreshFastPath,
        MeFastPath,
    ]
