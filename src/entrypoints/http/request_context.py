"""From a Litestar request to the application's view of it (who, from where, which request)."""

from typing import Any

from litestar import Request

from application.identity import RequestContext
from entrypoints.http.asgi_types import Scope


def request_context(request: Request[Any, Any, Any]) -> RequestContext:
    return context_of_scope(request.scope)  # type: ignore[arg-type]


def context_of_scope(scope: Scope) -> RequestContext:
    """The same, from the raw ASGI scope (for the paths answered before the framework)."""
    state = scope.get("state", {})
    client = scope.get("client")
    user_agent: str | None = None
    for name, value in scope.get("headers", []):
        if name == b"user-agent":
            user_agent = value.decode("latin-1")
            break
    return RequestContext(
        ip=str(state.get("client_ip") or (client[0] if client else "unknown")),
        user_agent=user_agent,
        request_id=state.get("request_id"),
    )
