"""Write bodies must be JSON: anything else is 415 before it reaches a handler."""

from entrypoints.http.asgi_responses import send_problem
from entrypoints.http.asgi_types import ASGIApp, Receive, Scope, Send

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _has_body(headers: dict[bytes, bytes]) -> bool:
    length = headers.get(b"content-length")
    if length is not None:
        return length.strip() not in (b"", b"0")
    return b"transfer-encoding" in headers


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class JsonContentTypeMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in WRITE_METHODS:
            headers = {name.lower(): value for name, value in scope.get("headers", [])}
            if _has_body(headers) and not _is_json(headers.get(b"content-type", b"")):
                await send_problem(
                    send, 415, "unsupported_media_type", "Request bodies must be application/json."
                )
                return
        await self.app(scope, receive, send)
