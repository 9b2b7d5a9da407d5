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
  raises it (`precomputed_failure`, see `fast_path.py`) and answers it as it answers every
  error, CORS included.

The 200 answer is built by the functions the route uses (`token_body`, `refresh_cookie_value`),
and its CORS headers by `cors_headers`, which follows Litestar's CORS middleware; tests hold the
answers to a reference app without the fast path."""

import msgspec
from litestar.config.cors import CORSConfig

from entrypoints.composition import Container
from entrypoints.http.asgi_types import ASGIApp, Scope
from entrypoints.http.cookies import AUTH_PATH, refresh_cookie_in, refresh_cookie_name
from entrypoints.http.cors_answer import CorsHeaders
from entrypoints.http.fast_path import Answer, FastPath
from entrypoints.http.plain_host import is_plain_post, single_headers
from entrypoints.http.request_context import context_of_scope
from entrypoints.http.token_answer import refresh_cookie_value, token_body

PATH = f"{AUTH_PATH}/refresh"

_ENCODER = msgspec.json.Encoder()
_ONCE = frozenset({b"origin"})


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


class RefreshFastPath(FastPath):
    effectful = True  # a refresh rotates the token: its failure is the route's to raise

    def __init__(self, app: ASGIApp, container: Container, cors: CORSConfig) -> None:
        super().__init__(app, container)
        self.cors = CorsHeaders(cors)
        self.cookie_name = refresh_cookie_name(container.settings.is_production)

    def pick(self, scope: Scope) -> tuple[str, bytes | None] | None:
        return _candidate(scope, self.cookie_name)

    async def decide(self, scope: Scope, picked: tuple[str, bytes | None], body: bytes) -> Answer:
        token, origin = picked
        result = await self.container.identity.refresh(token, context_of_scope(scope))
        headers = [
            (b"set-cookie", refresh_cookie_value(self.container, result.refresh_token).encode("ascii"))
        ]
        if origin is not None:
            headers += self.cors(origin.decode("latin-1"), has_cookie=True)
        return Answer(_ENCODER.encode(token_body(result.access, result.user)), headers)
