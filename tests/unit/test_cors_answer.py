"""The fast paths' memo of CORS headers: the same headers as computing them, and only listed
origins remembered (a caller sending endless Origin values must not grow a worker's memory)."""

from litestar.config.cors import CORSConfig

from entrypoints.http.cors_answer import CorsHeaders, cors_headers

LISTED = "https://app.example.com"


def _config(origins: list[str]) -> CORSConfig:
    return CORSConfig(allow_origins=origins, allow_credentials=True, allow_headers=["authorization"])


def test_a_listed_origin_is_answered_as_computed_and_remembered() -> None:
    config = _config([LISTED])
    memo = CorsHeaders(config)
    first = memo(LISTED, has_cookie=True)
    assert first == cors_headers(config, LISTED, has_cookie=True)
    assert (b"access-control-allow-origin", LISTED.encode()) in first
    assert memo(LISTED, has_cookie=False) is first
    assert list(memo._listed) == [LISTED]


def test_other_origins_are_computed_every_time_and_never_remembered() -> None:
    config = _config([LISTED])
    memo = CorsHeaders(config)
    for n in range(100):
        origin = f"https://evil-{n}.example"
        headers = memo(origin, has_cookie=True)
        assert headers == cors_headers(config, origin, has_cookie=True)
        assert all(name != b"access-control-allow-origin" for name, _ in headers)
    assert memo._listed == {}


def test_with_every_origin_allowed_nothing_is_remembered_and_the_cookie_still_counts() -> None:
    config = _config(["*"])
    memo = CorsHeaders(config)
    with_cookie = memo("https://any.example", has_cookie=True)
    without = memo("https://any.example", has_cookie=False)
    assert (b"access-control-allow-origin", b"https://any.example") in with_cookie
    assert (b"access-control-allow-origin", b"https://any.example") not in without
    assert without == cors_headers(config, "https://any.example", has_cookie=False)
    assert memo._listed == {}


def test_origins_a_wildcard_entry_matches_are_answered_but_never_remembered() -> None:
    config = _config([LISTED, "https://*.example.com"])
    memo = CorsHeaders(config)
    for n in range(100):
        origin = f"https://tenant-{n}.example.com"
        headers = memo(origin, has_cookie=True)
        assert (b"access-control-allow-origin", origin.encode()) in headers
    memo(LISTED, has_cookie=True)
    assert list(memo._listed) == [LISTED]
