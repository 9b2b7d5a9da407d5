"""Request id and client IP, resolved once per request and visible to handlers and log lines."""

import contextvars
import os
import re

from entrypoints.http.asgi_types import ASGIApp, Message, Receive, Scope, Send
from entrypoints.http.client_ip import Network, client_ip

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# fullmatch, not match: `$` also matches before a trailing newline, which would let "id\n" through.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            # A caller's id is kept for tracing only if it cannot inject anything into logs.
            if _SAFE_REQUEST_ID.fullmatch(candidate):
                return candidate
    return os.urandom(16).hex()  # 128 random bits, as uuid4().hex but without the UUID object


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, trusted_proxies: tuple[Network, ...]) -> None:
        self.app = app
        self.trusted_proxies = trusted_proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        state = scope.setdefault("state", {})  # type: ignore[typeddict-item]
        state["request_id"] = request_id
        state["client_ip"] = client_ip(scope, self.trusted_proxies)
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
