"""What the fast-path tests share: a client of the app with or without a fast path, and a raw
ASGI call for what httpx cannot send (a root_path)."""

from typing import Any

import httpx

from entrypoints.app import create_asgi
from entrypoints.http.asgi_types import ASGIApp
from tests.e2e.conftest import Service


def client_of(service: Service, **fast_paths: bool) -> httpx.AsyncClient:
    """A client of the service's container; `fast_paths` turns single fast paths off
    (`refresh_fast_path=False`: the reference app those tests compare with)."""
    app = create_asgi(service.container, **fast_paths)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    return httpx.AsyncClient(transport=transport, base_url="https://bulwark.test")


async def call_mounted(app: ASGIApp, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> list[Any]:
    """Sends one bodiless request to `app` as if it were mounted under /mounted; returns the
    messages it sent back."""
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "/mounted",
        "query_string": b"",
        "headers": [(b"host", b"bulwark.test"), *headers],
        "client": ("203.0.113.7", 50000),
        "server": ("bulwark.test", 443),
        "state": {},
    }
    await app(scope, receive, send)  # type: ignore[arg-type]
    return sent
