"""POST /api/v1/authz/check: the answer, and a lean way to it for the platform's services.

Every trading call of the platform asks this first, server to server, with a bearer token and no
`Origin`. For those requests the framework's routing, CORS, parameter parsing and response
building cost as much as the check itself, so `AuthzCheckFastPath` (raw ASGI, just inside the
HTTP ground-rule middleware, which still applies) answers them directly. It only ever answers
200: anything else -- no or a bad token, a body of the wrong shape, an oversized body, a
browser's request (it has an `Origin`), an error of any kind -- goes to the Litestar route with
the body replayed, and that route gives the answer and the error it gives everyone. Both paths
compute the 200 answer with `authz_answer`."""

import msgspec

from application.errors import InvalidInput
from application.use_cases.sessions import Principal
from entrypoints.composition import Container
from entrypoints.dto.orgs import AuthzCheckRequest, AuthzCheckResponse
from entrypoints.http.asgi_replay import replay
from entrypoints.http.asgi_types import ASGIApp, Message, Receive, Scope, Send

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


def _fast_path_candidate(scope: Scope) -> bytes | None:
    """The bearer token of a server-to-server check, or None when the framework should answer."""
    if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
        return None
    token: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"origin":
            return None  # a browser: the framework route adds CORS
        if name == b"authorization":
            if token is not None:
                return None  # two Authorization headers: let the framework decide
            token = value
    if token is None or token[:7].lower() != b"bearer ":
        return None
    return token[7:].strip() or None


class AuthzCheckFastPath:
    def __init__(self, app: ASGIApp, container: Container, max_body_bytes: int) -> None:
        self.app = app
        self.container = container
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _fast_path_candidate(scope)
        if token is None:
            await self.app(scope, receive, send)
            return
        seen: list[Message] = []
        size = 0
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_body_bytes or not message.get("more_body"):
                break
        complete = seen[-1]["type"] == "http.request" and not seen[-1].get("more_body")
        body: bytes | None = None
        if complete and size <= self.max_body_bytes:
            try:
                data = _DECODER.decode(b"".join(m.get("body", b"") for m in seen))
                principal = await self.container.identity.authenticate(token.decode("latin-1"))
                body = await authz_answer(self.container, principal, data)
            except Exception:
                body = None
        if body is None:
            await self.app(scope, replay(seen, receive), send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})
