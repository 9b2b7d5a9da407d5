"""The refresh-token cookie: httpOnly, Secure, SameSite=Strict, only sent to the auth endpoints.

Written as a plain Set-Cookie header: Litestar's Cookie goes through dataclasses.asdict and
http.cookies on every response, a noticeable share of a refresh's CPU, for a header whose every
part but the value is fixed."""

import re
from collections.abc import Iterable

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


def broker_flow_cookie_name(production: bool) -> str:
    return "__Secure-bulwark_broker_flow" if production else "bulwark_broker_flow"


BROKER_CALLBACK_PATH = "/api/v1/broker-connections/ctrader/callback"


def broker_flow_cookie_header(name: str, value: str, max_age: int) -> str:
    """Lax, not Strict: the browser comes back from the broker's site by a top-level GET, and must
    bring this cookie along; only to the callback's path."""
    if not _SAFE_VALUE.fullmatch(value):
        raise ValueError("the flow binding must be URL-safe base64")
    return (
        f"{name}={value}; Max-Age={int(max_age)}; Path={BROKER_CALLBACK_PATH}; HttpOnly; Secure; SameSite=Lax"
    )


def cleared_broker_flow_cookie_header(name: str) -> str:
    return f"{name}=; Max-Age=0; Path={BROKER_CALLBACK_PATH}; HttpOnly; Secure; SameSite=Lax"


def refresh_cookie_in(headers: Iterable[tuple[bytes, bytes]], name: str) -> str | None:
    """The refresh cookie's value from a request's raw headers, read strictly.

    Only the exact name counts, with nothing around it but spaces and tabs (RFC 6265). A cookie
    named, say, `\\xa0__Secure-bulwark_refresh` is not protected by the browser's prefix rules
    (anyone who can toss a cookie onto the domain can set it), and a parser that strips Unicode
    whitespace -- Litestar's does -- would read it as ours: that would let an attacker slip their
    own session under a victim's browser. Several Cookie headers (HTTP/2 splits them) are read
    as one, and when the name repeats the last one counts. The value is taken as it is: ours is
    URL-safe base64, with nothing to unquote; an empty one is no cookie."""
    target = name.encode("ascii")
    found: bytes | None = None
    for header, value in headers:
        if header != b"cookie":
            continue
        for part in value.split(b";"):
            key, sep, cookie = part.partition(b"=")
            if sep and key.strip(b" \t") == target:
                found = cookie.strip(b" \t")
    return found.decode("latin-1") if found else None


# The admin session cookie: `__Host-` pins it to this exact host, Secure and Path=/ (no subdomain
# can set or shadow it); Strict keeps it off every cross-site request. Its own name: user routes
# never read it, admin routes read nothing else.
ADMIN_API_PATH = "/api/admin/v1"
_ADMIN_ATTRIBUTES = "Path=/; HttpOnly; Secure; SameSite=Strict"
# A compact JWS: base64url segments and dots, nothing that needs quoting or could end the header.
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_.-]*")


def admin_cookie_name(production: bool) -> str:
    return "__Host-bulwark_admin" if production else "bulwark_admin"


def admin_cookie_header(name: str, value: str, max_age: int) -> str:
    if not _SAFE_TOKEN.fullmatch(value):
        raise ValueError("an admin session token must be a compact JWS")
    return f"{name}={value}; Max-Age={max(0, int(max_age))}; {_ADMIN_ATTRIBUTES}"


def cleared_admin_cookie_header(name: str) -> str:
    return f"{name}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; {_ADMIN_ATTRIBUTES}"


# Single sign-on. The flow cookie binds a pending sign-in to the browser that started it (login
# CSRF): `__Host-` pins it to this exact host (no subdomain can set or shadow it), and Lax lets
# the top-level GET back from the provider carry it. Short: the state record lives ten minutes.
SSO_FLOW_COOKIE = "__Host-bulwark_sso"
_SSO_FLOW_ATTRIBUTES = "Path=/; HttpOnly; Secure; SameSite=Lax"
# After an SSO sign-in of a two-factor account, the `mfa_token` waits here for the SPA to fetch
# it by POST (never in a URL); only that endpoint's path sees it.
SSO_MFA_COOKIE = "__Secure-bulwark_sso_mfa"
SSO_MFA_PATH = "/api/v1/auth/sso/mfa"
_SSO_MFA_ATTRIBUTES = f"Path={SSO_MFA_PATH}; HttpOnly; Secure; SameSite=Strict"


def sso_flow_cookie_header(value: str, max_age: int) -> str:
    if not _SAFE_VALUE.fullmatch(value):
        raise ValueError("the flow binding must be URL-safe base64")
    return f"{SSO_FLOW_COOKIE}={value}; Max-Age={int(max_age)}; {_SSO_FLOW_ATTRIBUTES}"


def cleared_sso_flow_cookie_header() -> str:
    return f"{SSO_FLOW_COOKIE}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; {_SSO_FLOW_ATTRIBUTES}"


def sso_mfa_cookie_header(value: str, max_age: int) -> str:
    if not _SAFE_VALUE.fullmatch(value):
        raise ValueError("an mfa_token must be URL-safe base64")
    return f"{SSO_MFA_COOKIE}={value}; Max-Age={int(max_age)}; {_SSO_MFA_ATTRIBUTES}"


def cleared_sso_mfa_cookie_header() -> str:
    return f"{SSO_MFA_COOKIE}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; {_SSO_MFA_ATTRIBUTES}"
