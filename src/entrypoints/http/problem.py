"""RFC 9457 problem details: the one error shape of every response."""

from http import HTTPStatus
from typing import Any

import msgspec

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem_body(status: int, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {
        "type": f"urn:bulwark:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def encode_problem(status: int, code: str, detail: str, **extra: Any) -> bytes:
    return msgspec.json.encode(problem_body(status, code, detail, **extra))
