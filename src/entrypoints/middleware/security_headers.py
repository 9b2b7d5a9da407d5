"""Security headers on every response, including errors produced before routing."""

from entrypoints.http.asgi_types import ASGIApp, Message, Receive, Scope, Send

BASE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.headers = BASE_HEADERS + ((HSTS,) if hsts else ())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                if (
                    b"access-control-allow-credentials" in present
                    and b"access-control-allow-origin" not in present
                ):
                    # Litestar's CORS adds it for any Origin; without an allowed origin it means nothing
                    # and must not suggest to anyone that credentials are welcome.
                    headers = [h for h in headers if h[0].lower() != b"access-control-allow-credentials"]
                headers.extend(h for h in self.headers if h[0] not in present)
                # Tokens and personal data must never land in a shared or browser cache; a
                # handler that serves something cacheable (JWKS) says so explicitly.
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
