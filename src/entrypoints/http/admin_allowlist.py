"""Who may see the admin panel: clients in BULWARK_ADMIN_ALLOWED_NETWORKS, by the one client-IP
function. To everyone else an admin path is an unknown route."""

import ipaddress
from collections.abc import Iterable
from typing import Any, cast

from litestar.connection import ASGIConnection
from litestar.exceptions import NotFoundException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard
from litestar.utils import normalize_path

from entrypoints.http.asgi_types import Scope
from entrypoints.http.client_ip import Network, forwarded_client, parse_networks

ADMIN_PREFIX = "/api/admin/v1"
# Where a hidden admin request is sent instead: no route can match it (the app factory proves it
# at start-up), so its answer is the framework's own unknown-route answer.
UNKNOWN_ROUTE_PATH = "/.bulwark-no-such-route"


def routed_path(scope: Scope) -> str:
    """The path as Litestar's router sees it (root_path cut off, slashes collapsed): checking the
    raw path would let `//api/admin/v1/...` or a trailing slash route to an admin handler unseen."""
    path: str = scope["path"]
    if root_path := scope.get("root_path", ""):
        path = path.split(root_path, maxsplit=1)[-1]  # exactly as litestar._asgi.asgi_router does
    return normalize_path(path)


def is_admin_path(path: str) -> bool:
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


class AdminAllowlist:
    def __init__(self, networks: Iterable[str], trusted_proxies: tuple[Network, ...]) -> None:
        self.networks = parse_networks(networks)
        self.trusted_proxies = trusted_proxies

    @property
    def is_off(self) -> bool:
        return not self.networks

    def allows(self, scope: Scope) -> bool:
        if not self.networks:
            return False
        forwarded = forwarded_client(scope, self.trusted_proxies)
        if forwarded is None:
            return False  # a trusted proxy forwarded a chain nobody can read: allow nobody
        try:
            ip = ipaddress.ip_address(forwarded)
        except ValueError:
            return False  # no socket peer ("unknown"): nobody to allow
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack socket shows 127.0.0.1 as ::ffff:127.0.0.1
        return any(ip in network for network in self.networks)


def admin_network_guard(allowlist: AdminAllowlist) -> Guard:
    """Second line behind the ASGI gate: should a path ever reach an admin handler without passing
    the gate, the handler still answers only the allowlist (with the unknown-route 404)."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if not allowlist.allows(cast(Scope, connection.scope)):
            raise NotFoundException()

    guard.__name__ = "admin_network_guard"
    return guard
