"""The successor of a refresh token is HMAC-SHA-256 under the server's key, base64url without
padding. The derivation must never drift: two tabs inside the grace period, or two workers of
different releases during a deploy, must derive the same successor from the same token."""

import base64
import hashlib
import hmac

from application.use_cases.session_tokens import successor_of

KEY = bytes(range(32))


def test_the_successor_is_the_documented_hmac() -> None:
    token = "dGhpcyBpcyBub3QgYSByZWFsIHRva2VuIGJ1dCBpdCB3aWxsIGRv"
    expected = hmac.new(KEY, b"refresh-successor|" + token.encode(), hashlib.sha256).digest()
    assert successor_of(token, KEY) == base64.urlsafe_b64encode(expected).rstrip(b"=").decode()


def test_a_pinned_value_keeps_deploys_compatible() -> None:
    assert successor_of("abc", KEY) == successor_of("abc", KEY)
    assert successor_of("abc", KEY) != successor_of("abd", KEY)
    assert successor_of("abc", KEY) != successor_of("abc", KEY[::-1])
    assert successor_of("abc", KEY) == "CodDHtMzAUz8BEScSvMl3dBK7hUyjqxnwEOEDVE1ry0"
