"""The hand-written Set-Cookie header: fixed attributes, and no value that could break out of it."""

from http.cookies import SimpleCookie

import pytest

from entrypoints.http.cookies import (
    AUTH_PATH,
    cleared_refresh_cookie_header,
    refresh_cookie_header,
    refresh_cookie_in,
)


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


# -- reading it back -------------------------------------------------------------------------------

NAME = "__Secure-bulwark_refresh"


def read(*cookie_headers: str) -> str | None:
    return refresh_cookie_in([(b"cookie", h.encode("latin-1")) for h in cookie_headers], NAME)


def test_the_refresh_cookie_is_read_among_others() -> None:
    assert read(f"theme=dark; {NAME}=abc-DEF_1; lang=en") == "abc-DEF_1"
    assert read(f"theme=dark;{NAME}=abc \t") == "abc"  # spaces and tabs around parts are allowed
    assert read("theme=dark") is None
    assert read(f"{NAME}=") is None and read(NAME) is None


def test_only_the_exact_name_counts() -> None:
    # A browser's prefix rules do not protect these names; a parser that strips Unicode
    # whitespace (Litestar's str.strip) reads them as ours, and the last one would win.
    for lookalike in ("\xa0", "\x1f", "\x1c", "\x85", "\x0b"):
        assert read(f"{NAME}=mine; {lookalike}{NAME}=theirs") == "mine", repr(lookalike)
        assert read(f"{NAME}{lookalike}=theirs") is None, repr(lookalike)
    assert read(f"bulwark_refresh=theirs; {NAME.lower()}=theirs") is None


def test_repeats_and_split_headers_read_as_one_with_the_last_winning() -> None:
    assert read(f"{NAME}=first; {NAME}=second") == "second"
    assert read("theme=dark", f"{NAME}=mine") == "mine"  # HTTP/2 splits Cookie headers
    assert read(f"{NAME}=first", f"{NAME}=second") == "second"


def test_the_value_is_taken_as_it_is() -> None:
    assert read(f'{NAME}="abc"') == '"abc"'  # not a token of ours: refused as unknown, not unquoted
    assert read(f"{NAME}=a%2Bb") == "a%2Bb"
