"""The refresh-token cookie: httpOnly, Secure, SameSite=Strict, only sent to the auth endpoints.

Written as a plain Set-Cookie header: Litestar's Cookie goes through dataclasses.asdict and
http.cookies on every response, a noticeable share of a refresh's CPU, for a header whose every
part but the value is fixed."""

import re

AUTH_PATH = "/api/v1/auth"
_ATTRIBUTES = f"Path={AUTH_PATH}; HttpOnly; Secure; SameSite=Strict"
# Refresh tokens are URL-safe base64: nothing that needs quoting or could end the header.
_SAFE_VALUE = re.compile(r"[A-Za-z0-9_-]*")


def refresh_cookie_name(production: bool) -> str:
    # `__Host-` would demand Path=/; `__Secure-` keeps the cookie off every non-auth path.
    return "__Secure-bulwark_refresh" if production else "bulwark_refresh"


def refresh_cookie_header(name: str, value: str, max_age: int) -> str:
    if not _SAFE_VALUE.fullmatch(value):
        raise ValueError("a refresh token must be URL-safe base64")
    return f"{name}={value}; Max-Age={int(max_age)}; {_ATTRIBUTES}"


def cleared_refresh_cookie_header(name: str) -> str:
    return f"{name}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; {_ATTRIBUTES}"
