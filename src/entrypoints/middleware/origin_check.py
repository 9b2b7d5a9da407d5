"""Cross-site request forgery defence for state-changing requests.

Browsers always send `Origin` (or at least `Referer`) on cross-site writes, and modern ones send
`Sec-Fetch-Site`; so a write must come from an allowed origin exactly. Clients that send neither
header are not browsers, and may only write when they authenticate with a bearer token or an API
key -- never with a cookie alone, which a browser would attach on the victim's behalf."""

from urllib.parse import urlsplit

from entrypoints.http.asgi_responses import send_problem
from entrypoints.http.asgi_types import ASGIApp, Receive, Scope, Send

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def origin_of_referer(referer: str) -> str | None:
    try:
        parts = urlsplit(referer)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def _authenticates_without_cookie(headers: dict[bytes, bytes]) -> bool:
    authorization = headers.get(b"authorization", b"")
    return authorization[:7].lower() == b"bearer " or b"x-api-key" in headers


class OriginCheckMiddleware:
    def __init__(self, app: ASGIApp, *, allowed_origins: tuple[str, ...]) -> None:
        self.app = app
        self.allowed = frozenset(allowed_origins)

    def allows(self, headers: dict[bytes, bytes]) -> bool:
        if headers.get(b"sec-fetch-site", b"").lower() == b"cross-site":
            return False
        origin = headers.get(b"origin")
        if origin is not None:
            text = origin.decode("latin-1")
            return text != "null" and text in self.allowed
        referer = headers.get(b"referer")
        if referer is not None:
            return origin_of_referer(referer.decode("latin-1")) in self.allowed
        return _authenticates_without_cookie(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in STATE_CHANGING:
            headers = {name.lower(): value for name, value in scope.get("headers", [])}
            if not self.allows(headers):
                await send_problem(send, 403, "origin_not_allowed", "This request's origin is not allowed.")
                return
        await self.app(scope, receive, send)
