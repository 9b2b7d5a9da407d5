"""POST /api/v1/auth/refresh: a lean way to the SPA's most frequent call.

Every open tab of the SPA refreshes its access token every few minutes. For a refresh the
framework's routing, CORS wrapping, parameter resolution and response building cost about a
fifth of its CPU, so `RefreshFastPath` (raw ASGI, just inside the HTTP ground-rule middleware,
which still applies) runs the refresh use case itself for plain requests and writes the 200
answer directly. It never writes anything else:

- a request it is not sure about (no refresh cookie, several Origin or Host headers, an odd
  Host, a root_path) goes to the Litestar route untouched; the cookie is read by the function
  the route reads it with (`refresh_cookie_in`);
- a refresh that fails (an invalid or reused token, a suspended account, an error of any kind)
  has already happened, so it must not run twice: the failure goes to the Litestar route, which
  raises it (`precomputed_failure`) and answers it as it answers every error, CORS included.

The 200 answer is built by the functions the route uses (`token_body`, `refresh_cookie_value`),
and its CORS headers by `cors_headers`, which follows Litestar's CORS middleware; tests hold the
answers to a reference app without the fast path. A guard, hook or middleware added to the
Litestar app or to the route later does NOT run here: add it here as well, or drop the path."""

from typing import Any

import msgspec
from litestar.config.cors import CORSConfig

from entrypoints.composition import Container
from entrypoints.http.asgi_types import ASGIApp, Receive, Scope, Send
from entrypoints.http.cookies import AUTH_PATH, refresh_cookie_in, refresh_cookie_name
from entrypoints.http.cors_answer import CorsHeaders
from entrypoints.http.plain_host import is_plain_post, single_headers
from entrypoints.http.request_context import context_of_scope
from entrypoints.http.token_answer import refresh_cookie_value, token_body

PATH = f"{AUTH_PATH}/refresh"
# Where the fast path leaves a refresh's failure for the route to raise (in the ASGI scope).
FAILURE_KEY = "bulwark.refresh_failure"

_ENCODER = msgspec.json.Encoder()
_ONCE = frozenset({b"origin"})


def precomputed_failure(scope: Scope) -> BaseException | None:
    """The failure of a refresh the fast path already ran for this request, if any."""
    failure: BaseException | None = scope.get(FAILURE_KEY)
    return failure


def _candidate(scope: Scope, cookie_name: str) -> tuple[str, bytes | None] | None:
    """(refresh token, Origin) of a plain refresh request, or None when the framework should answer."""
    if not is_plain_post(scope, PATH):
        return None
    seen = single_headers(scope, _ONCE)
    if seen is None:
        return None
    origin = seen.get(b"origin")
    token = refresh_cookie_in(scope["headers"], cookie_name)  # as the route reads it
    return None if token is None else (token, origin)


class RefreshFastPath:
    def __init__(self, app: ASGIApp, container: Container, cors: CORSConfig) -> None:
        self.app = app
        self.container = container
        self.cors = CorsHeaders(cors)
        self.cookie_name = refresh_cookie_name(container.settings.is_production)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        candidate = _candidate(scope, self.cookie_name)
        if candidate is None:
            await self.app(scope, receive, send)
            return
        token, origin = candidate
        try:
            result = await self.container.identity.refresh(token, context_of_scope(scope))
        except Exception as failure:  # the route answers it, as it answers every failure
            scope[FAILURE_KEY] = failure
            await self.app(scope, receive, send)
            return
        body = _ENCODER.encode(token_body(result.access, result.user))
        headers: list[Any] = [
            (b"content-type", b"application/json"),
            (b"set-cookie", refresh_cookie_value(self.container, result.refresh_token).encode("ascii")),
            (b"content-length", b"%d" % len(body)),
        ]
        if origin is not None:
            headers += self.cors(origin.decode("latin-1"), has_cookie=True)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
