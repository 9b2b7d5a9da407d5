"""GET /api/v1/me: a lean way to the call the SPA makes on every page.

The profile itself comes from the worker's memory (the profile cache and the encoded body), so
for this call the framework's routing, CORS wrapping, handler signature and response building
cost more than the answer. `MeFastPath` (raw ASGI, just inside the HTTP ground-rule middleware,
which still applies; see `fast_path.py`) writes the 200 answer itself for a plain request whose
bearer token and profile check out. It never writes anything else:

- a request it is not sure about (a query string, a root_path, no bearer token, several
  Authorization, Origin or Host headers, an odd Host) goes to the Litestar route untouched;
- a failure of any kind (an invalid or revoked token, a profile that cannot be loaded) goes to
  the route too, which runs the call again and answers it as it answers every error, CORS
  included. Reading a profile changes nothing, so running it twice is harmless.

The body is the route's (`me_body`), the CORS headers those of Litestar's CORS middleware
(`cors_headers`); tests hold the answers to a reference app without the fast path."""

from litestar.config.cors import CORSConfig

from entrypoints.composition import Container
from entrypoints.http.asgi_types import ASGIApp, Scope
from entrypoints.http.cors_answer import CorsHeaders
from entrypoints.http.fast_path import Answer, FastPath
from entrypoints.http.me_answer import me_body
from entrypoints.http.plain_host import is_plain_get, single_headers

PATH = "/api/v1/me"
_ONCE = frozenset({b"authorization", b"origin"})


def _candidate(scope: Scope) -> tuple[str, bytes | None, bool] | None:
    """(bearer token, Origin, whether a cookie came) of a plain request, or None when the
    framework should answer."""
    if not is_plain_get(scope, PATH):
        return None
    seen = single_headers(scope, _ONCE)
    if seen is None:
        return None
    token = seen.get(b"authorization")
    if token is None or token[:7].lower() != b"bearer ":
        return None
    bearer = token[7:].strip()
    if not bearer:
        return None
    has_cookie = any(name == b"cookie" for name, _ in scope["headers"])
    return bearer.decode("latin-1"), seen.get(b"origin"), has_cookie


class MeFastPath(FastPath):
    def __init__(self, app: ASGIApp, container: Container, cors: CORSConfig) -> None:
        super().__init__(app, container)
        self.cors = CorsHeaders(cors)

    def pick(self, scope: Scope) -> tuple[str, bytes | None, bool] | None:
        return _candidate(scope)

    async def decide(self, scope: Scope, picked: tuple[str, bytes | None, bool], body: bytes) -> Answer:
        token, origin, has_cookie = picked
        principal = await self.container.identity.authenticate(token)
        headers = [] if origin is None else list(self.cors(origin.decode("latin-1"), has_cookie=has_cookie))
        return Answer(await me_body(self.container, principal), headers)
