"""POST /api/v1/authz/check: the answer, and a lean way to it for the platform's services.

Every trading call of the platform asks this first, server to server, with a bearer token and no
`Origin`. For those requests the framework's routing, CORS, parameter parsing and response
building cost as much as the check itself, so `AuthzCheckFastPath` (raw ASGI, just inside the
HTTP ground-rule middleware, which still applies; see `fast_path.py`) answers them directly.
It only ever answers 200: anything else -- no or a bad token, a body of the wrong shape, an
oversized body, a browser's request (it has an `Origin`), an error of any kind -- goes to the
Litestar route with the body replayed, and that route gives the answer and the error it gives
everyone. Both paths compute the 200 answer with `authz_answer`.

What Litestar would check before the handler, the fast path checks or declines on: the Host
header, Content-Length, root_path."""

import msgspec

from application.errors import InvalidInput
from application.use_cases.sessions import Principal
from entrypoints.composition import Container
from entrypoints.dto.orgs import AuthzCheckRequest, AuthzCheckResponse
from entrypoints.http.asgi_types import Scope
from entrypoints.http.fast_path import Answer, FastPath
from entrypoints.http.plain_host import PLAIN_HOST, is_plain_post

PATH = "/api/v1/authz/check"

# The two answers of the single form, encoded once.
_ALLOWED = msgspec.json.encode(AuthzCheckResponse(allowed=True))
_DENIED = msgspec.json.encode(AuthzCheckResponse(allowed=False))
_DECODER = msgspec.json.Decoder(AuthzCheckRequest)


async def authz_answer(container: Container, principal: Principal, data: AuthzCheckRequest) -> bytes:
    """The JSON body of the 200 answer; InvalidInput when the request names no permission form."""
    if (data.permission is None) == (data.permissions is None):
        raise InvalidInput("Send either `permission` or `permissions`.", field="permission")
    if data.permission is not None:
        results = await container.authz.check(principal, [data.permission])
        return _ALLOWED if results[data.permission] else _DENIED
    assert data.permissions is not None
    results = await container.authz.check(principal, data.permissions)
    return msgspec.json.encode(AuthzCheckResponse(allowed=all(results.values()), results=results))


def _fast_path_candidate(scope: Scope, max_body_bytes: int) -> bytes | None:
    """The bearer token of a server-to-server check, or None when the framework should answer."""
    if not is_plain_post(scope, PATH):
        return None
    token: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"origin":
            return None  # a browser: the framework route adds CORS
        if name == b"authorization":
            if token is not None:
                return None  # two Authorization headers: let the framework decide
            token = value
        elif name == b"content-length":
            if not value.isdigit() or int(value) > max_body_bytes:
                return None  # the route answers 400 or 413
        elif name == b"host" and not PLAIN_HOST.fullmatch(value):
            return None
    if token is None or token[:7].lower() != b"bearer ":
        return None
    return token[7:].strip() or None


class AuthzCheckFastPath(FastPath):
    reads_body = True  # reading: a failure is simply run again by the route

    def pick(self, scope: Scope) -> bytes | None:
        return _fast_path_candidate(scope, self.max_body_bytes)

    async def decide(self, scope: Scope, picked: bytes, body: bytes) -> Answer:
        data = _DECODER.decode(body)
        principal = await self.container.identity.authenticate(picked.decode("latin-1"))
        return Answer(await authz_answer(self.container, principal, data))
