"""The hand-written Set-Cookie header: fixed attributes, and no value that could break out of it."""

from http.cookies import SimpleCookie

import pytest

from entrypoints.http.cookies import AUTH_PATH, cleared_refresh_cookie_header, refresh_cookie_header


def parsed(header: str) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    jar.load(header)
    return jar


def test_the_cookie_is_locked_down_to_the_auth_path() -> None:
    morsel = parsed(refresh_cookie_header("__Secure-bulwark_refresh", "abc-DEF_123", 2592000))[
        "__Secure-bulwark_refresh"
    ]
    assert morsel.value == "abc-DEF_123"
    assert morsel["path"] == AUTH_PATH
    assert morsel["httponly"] is True and morsel["secure"] is True
    assert morsel["samesite"] == "Strict" and morsel["max-age"] == "2592000"


def test_the_cleared_cookie_expires_at_once() -> None:
    morsel = parsed(cleared_refresh_cookie_header("bulwark_refresh"))["bulwark_refresh"]
    assert morsel.value == "" and morsel["max-age"] == "0" and morsel["path"] == AUTH_PATH


@pytest.mark.parametrize("value", ["a;Path=/", "a\r\nSet-Cookie: x=y", "a b", 'a"', "a,b", "é"])
def test_a_value_that_could_break_out_of_the_header_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="URL-safe"):
        refresh_cookie_header("bulwark_refresh", value, 60)
