"""Every error a route can answer, in the OpenAPI document: a client generated from `/schema`
must know each status and that errors come as problem+json (RFC 9457), not as Litestar's own
validation shape. What a route can answer follows from what it is, so the rule lives here once
instead of on a hundred handlers; a route states only what the rule cannot see, in its `opt`:

- `public`: no credential is read (health, discovery): no 401/403/404/409/429 of its own;
- `problems`: extra statuses this route answers (e.g. 410 for a spent link).
"""

from collections.abc import Iterable, Mapping
from typing import Any

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Reference,
    Schema,
)
from litestar.routes import HTTPRoute

from entrypoints.http.problem import PROBLEM_CONTENT_TYPE

_TEXT = Schema(type=OpenAPIType.STRING)
PROBLEM_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    description="RFC 9457 problem details: every error of this API.",
    required=["type", "title", "status", "detail", "code"],
    properties={
        "type": Schema(type=OpenAPIType.STRING, examples=["urn:bulwark:problem:not_found"]),
        "title": _TEXT,
        "status": Schema(type=OpenAPIType.INTEGER),
        "detail": _TEXT,
        "code": Schema(type=OpenAPIType.STRING, description="Stable machine-readable reason."),
        "field": Schema(type=OpenAPIType.STRING, description="The input field at fault, when one is."),
    },
    additional_properties=True,
)
_DESCRIPTIONS = {
    400: "The input is not valid (the problem names the field).",
    401: "No valid credential.",
    403: "The credential may not do this (or the request's origin is not allowed).",
    404: "No such resource, or not visible to this caller.",
    409: "Conflicts with the current state (a name taken, a change made meanwhile).",
    410: "The link or token was already used or has expired.",
    413: "The body is larger than the limit.",
    415: "The body is not JSON.",
    429: "Too many attempts: wait as `Retry-After` says.",
    503: "A dependency is unavailable or the request timed out: retry later.",
}
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def problem_statuses(method: str, opt: Mapping[str, Any], has_params: bool, has_body: bool) -> set[int]:
    """The statuses a route may answer as problems, besides its success."""
    statuses = {503}
    if has_params or has_body:
        statuses.add(400)
    if has_body:
        statuses |= {413, 415}
    if method in _UNSAFE:
        statuses.add(403)  # the origin check refuses a foreign browser origin before any route
    if not opt.get("public"):
        statuses |= {400, 401, 403, 404, 429}
        if method in _UNSAFE:
            statuses.add(409)
    statuses |= set(opt.get("problems", ()))
    return statuses


def document_problems(app: Litestar) -> None:
    """Adds the problem responses to `app`'s OpenAPI document; call it before the document is
    first rendered (the rendering is cached)."""
    document = app.openapi_schema
    document.components = document.components or Components()
    document.components.schemas = {**(document.components.schemas or {}), "Problem": PROBLEM_SCHEMA}
    problem = OpenAPIMediaType(schema=Reference(ref="#/components/schemas/Problem"))
    paths = document.paths or {}
    for path, method, handler in _operations(app.routes):
        item = paths.get(path)
        operation = getattr(item, method.lower(), None) if item is not None else None
        if operation is None:
            continue  # not in the document (include_in_schema=False)
        responses = operation.responses = operation.responses or {}
        has_body = operation.request_body is not None
        statuses = problem_statuses(method, handler.opt, bool(operation.parameters), has_body)
        for status in sorted(statuses):
            responses[str(status)] = OpenAPIResponse(
                description=_DESCRIPTIONS[status], content={PROBLEM_CONTENT_TYPE: problem}
            )


def _operations(routes: Iterable[Any]) -> Iterable[tuple[str, str, HTTPRouteHandler]]:
    for route in routes:
        if not isinstance(route, HTTPRoute):
            continue
        for method, (handler, _) in route.route_handler_map.items():
            if method in ("HEAD", "OPTIONS"):
                continue
            yield route.path_format, str(method), handler
