"""From a Litestar request to the application's view of it (who, from where, which request)."""

from typing import Any

from litestar import Request

from application.identity import RequestContext


def request_context(request: Request[Any, Any, Any]) -> RequestContext:
    state = request.scope.get("state", {})
    return RequestContext(
        ip=str(state.get("client_ip") or (request.client.host if request.client else "unknown")),
        user_agent=request.headers.get("user-agent"),
        request_id=state.get("request_id"),
    )
