"""Write bodies must be JSON: anything else is 415 before it reaches a handler."""

from entrypoints.http.asgi_replay import replay
from entrypoints.http.asgi_responses import send_problem
from entrypoints.http.asgi_types import ASGIApp, Message, Receive, Scope, Send

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


# RFC 9112 6.3: an HTTP/1.x request with neither header has no body. ("1": granian's HTTP/1.0.)
_LENGTH_FRAMED = frozenset({"1", "1.0", "1.1"})


def _declared_body(headers: dict[bytes, bytes], http_version: object) -> bool | None:
    """True/False when the request says whether a body follows; None when it does not (HTTP/2 and
    HTTP/3 may stream a body with neither Content-Length nor Transfer-Encoding)."""
    length = headers.get(b"content-length")
    if length is not None:
        return length.strip() not in (b"", b"0")
    if b"transfer-encoding" in headers:
        return True
    # Known to be HTTP/1.x only when the server says so (ASGI lets it leave the version out).
    return False if http_version in _LENGTH_FRAMED else None


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class JsonContentTypeMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in WRITE_METHODS:
            headers = {name.lower(): value for name, value in scope.get("headers", [])}
            if not _is_json(headers.get(b"content-type", b"")):
                declared = _declared_body(headers, scope.get("http_version"))
                if declared is None:
                    # Undeclared length: read until the first non-empty chunk (or the end), then
                    # hand every chunk read on unchanged. Empty chunks say nothing either way.
                    seen: list[Message] = []
                    while True:
                        message = await receive()
                        seen.append(message)
                        if (
                            message.get("type") != "http.request"
                            or message.get("body")
                            or not message.get("more_body")
                        ):
                            break
                    declared = any(m.get("body") for m in seen)
                    receive = replay(seen, receive)
                if declared:
                    await send_problem(
                        send, 415, "unsupported_media_type", "Request bodies must be application/json."
                    )
                    return
        await self.app(scope, receive, send)
