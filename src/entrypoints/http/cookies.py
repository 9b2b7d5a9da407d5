"""The refresh-token cookie: httpOnly, Secure, SameSite=Strict, only sent to the auth endpoints."""

from litestar.datastructures import Cookie

AUTH_PATH = "/api/v1/auth"


def refresh_cookie_name(production: bool) -> str:
    # `__Host-` would demand Path=/; `__Secure-` keeps the cookie off every non-auth path.
    return "__Secure-bulwark_refresh" if production else "bulwark_refresh"


def refresh_cookie(name: str, value: str, max_age: int) -> Cookie:
    return Cookie(
        key=name, value=value, path=AUTH_PATH, httponly=True, secure=True, samesite="strict", max_age=max_age
    )


def cleared_refresh_cookie(name: str) -> Cookie:
    return Cookie(
        key=name,
        value="",
        path=AUTH_PATH,
        httponly=True,
        secure=True,
        samesite="strict",
        max_age=0,
        expires=0,
    )
