"""The admin panel is invisible outside its allowlist.

A request for an admin path from a client the allowlist does not name goes on down the whole
stack with its path replaced by one no route matches. Its answer is therefore not an imitation
of the unknown-route answer but that answer itself -- the same 404 body, the same headers, CORS
included, never a 405 or an `Allow` -- produced by the same work. This sits outermost so that no
middleware ever sees the real admin path of a hidden request."""

from entrypoints.http.admin_allowlist import UNKNOWN_ROUTE_PATH, AdminAllowlist, is_admin_path, routed_path
from entrypoints.http.asgi_types import ASGIApp, Receive, Scope, Send


class AdminGateMiddleware:
    def __init__(self, app: ASGIApp, allowlist: AdminAllowlist) -> None:
        self.app = app
        self.allowlist = allowlist

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] in ("http", "websocket")
            and is_admin_path(routed_path(scope))
            and not self.allowlist.allows(scope)
        ):
            root_path = scope.get("root_path", "")
            path = root_path + UNKNOWN_ROUTE_PATH
            scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)
