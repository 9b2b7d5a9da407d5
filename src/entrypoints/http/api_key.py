"""The bridge key of a request: one `X-API-Key` header, not blank. The one reading both the
bridge routes and their fast path use."""

from collections.abc import Iterable


def api_key_in(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    keys = [value for name, value in headers if name == b"x-api-key"]
    if len(keys) != 1 or not keys[0].strip():
        return None
    return keys[0].decode("latin-1").strip()
