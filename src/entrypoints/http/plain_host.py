"""What the fast paths ask of a request before taking it. The Host values they accept are a
subset of what Litestar accepts (it answers 400 to what it cannot use); a request with any
other Host goes to the framework."""

import re
from collections.abc import MutableMapping
from typing import Any

PLAIN_HOST = re.compile(rb"[A-Za-z0-9.:\[\]-]{1,255}")


def is_plain_post(scope: MutableMapping[str, Any], path: str) -> bool:
    """An HTTP POST to exactly `path`, not mounted under a root_path."""
    return (
        scope["type"] == "http"
        and scope["path"] == path
        and scope["method"] == "POST"
        and not scope.get("root_path")
    )


def is_plain_get(scope: MutableMapping[str, Any], path: str) -> bool:
    """An HTTP GET to exactly `path`, without a query string, not mounted under a root_path."""
    return (
        scope["type"] == "http"
        and scope["path"] == path
        and scope["method"] == "GET"
        and not scope.get("query_string")
        and not scope.get("root_path")
    )


def single_headers(scope: MutableMapping[str, Any], names: frozenset[bytes]) -> dict[bytes, bytes] | None:
    """The values of the headers `names` and Host, or None when one of them comes more than once
    or Host is not plain (the framework should answer such a request)."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in names or name == b"host":
            if name in found:
                return None
            found[name] = value
    host = found.get(b"host")
    if host is not None and not PLAIN_HOST.fullmatch(host):
        return None
    return found
