"""The one mapping from exceptions to problem responses (application errors and Litestar's own)."""

import logging
import re
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from application.errors import (
    ApplicationError,
    Conflict,
    DependencyUnavailable,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    RateLimited,
)
from entrypoints.http.problem import PROBLEM_CONTENT_TYPE, problem_body

log = logging.getLogger("bulwark.http")

_STATUS_OF: list[tuple[type[ApplicationError], int]] = [
    (InvalidInput, 400),
    (NotAuthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (RateLimited, 429),
    (DependencyUnavailable, 503),
]
_HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}
_BACKTICKED = re.compile(r"`([^`]+)`")


def _problem(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response[Any]:
    return Response(
        content=problem_body(status, code, detail, **extra),
        status_code=status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def application_error_handler(_: Request[Any, Any, Any], exc: ApplicationError) -> Response[Any]:
    status = next((s for cls, s in _STATUS_OF if isinstance(exc, cls)), 400)
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {}
    if isinstance(exc, RateLimited | DependencyUnavailable):
        headers["retry-after"] = str(max(1, int(exc.retry_after + 0.999)))
    if isinstance(exc, InvalidInput) and exc.field:
        extra["field"] = exc.field
    # Errors that name what to fix (the orgs to hand over first) carry it as problem members.
    extra.update(getattr(exc, "problem_fields", None) or {})
    if isinstance(exc, NotAuthenticated):
        headers["www-authenticate"] = f'Bearer error="{exc.code}"'
    return _problem(status, exc.code, exc.detail, headers, **extra)


def _field_of(error: dict[str, Any]) -> str | None:
    key = error.get("key")
    message = str(error.get("message", ""))
    # msgspec reports unknown fields in the message, not the key.
    named = _BACKTICKED.search(message)
    if named and ("unknown field" in message or not key or key == "data"):
        return named.group(1).removeprefix("$.")
    return str(key) if key and key != "data" else None


def validation_error_handler(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    errors = exc.extra if isinstance(exc.extra, list) else []
    fields = [f for f in (_field_of(e) for e in errors if isinstance(e, dict)) if f]
    messages = [str(e.get("message")) for e in errors if isinstance(e, dict) and e.get("message")]
    if fields:
        detail = f"Invalid value for field '{fields[0]}': {messages[0] if messages else 'invalid'}"
    else:
        detail = messages[0] if messages else "The request body is not valid JSON of the expected shape."
    return _problem(
        400,
        "invalid_request",
        detail,
        field=fields[0] if fields else None,
        errors=[{"field": f} for f in fields] or None,
    )


def http_exception_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    headers = dict(exc.headers or {})
    code = _HTTP_CODES.get(status, "error")
    detail = exc.detail if status < 500 else "The server could not complete the request."
    if status == 405:
        allow = headers.get("allow") or headers.get("Allow")
        if allow:
            headers = {"allow": allow}
    if status == 400 and "json" in detail.lower():
        code = "malformed_json"
    return _problem(status, code, detail, headers or None)


def too_deep_handler(_: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    """A body nested deeper than the decoder recurses (`[[[[...]]]]`) is bad input, not a fault:
    it is the only way a request can exhaust the decoder's recursion."""
    return _problem(400, "malformed_body", "The request body is nested too deeply.")


def unexpected_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # The log line has the type and traceback; the response never shows either.
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _problem(500, "internal_error", "The server could not complete the request.")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ApplicationError: application_error_handler,
    ValidationException: validation_error_handler,
    HTTPException: http_exception_handler,
    RecursionError: too_deep_handler,
    Exception: unexpected_error_handler,
}
