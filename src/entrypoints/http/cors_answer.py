"""The CORS headers the fast paths add to their answers, as Litestar's CORS middleware would."""

from litestar.config.cors import CORSConfig

Headers = tuple[tuple[bytes, bytes], ...]


def cors_headers(config: CORSConfig, origin: str, has_cookie: bool) -> Headers:
    """The headers Litestar's CORS middleware adds to a (non-preflight) answer to `origin`."""
    headers: dict[str, str] = dict(config.simple_headers)
    if (config.is_allow_all_origins and has_cookie) or (
        not config.is_allow_all_origins and config.is_origin_allowed(origin=origin)
    ):
        headers["Access-Control-Allow-Origin"] = origin
        headers["Vary"] = "Origin"
    headers["Access-Control-Allow-Headers"] = ", ".join(sorted(set(config.allow_headers)))
    headers["Access-Control-Allow-Methods"] = ", ".join(sorted(set(config.allow_methods)))
    return tuple((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items())


class CorsHeaders:
    """`cors_headers`, remembered for the configured origins (building them was about 2 % of a
    refresh's CPU). Only an origin the config spells out exactly is remembered, so callers cannot
    grow the memo: a wildcard entry (`https://*.example.com`) matches endless origins."""

    def __init__(self, config: CORSConfig) -> None:
        self.config = config
        self._exact = frozenset(origin for origin in config.allow_origins if "*" not in origin)
        self._listed: dict[str, Headers] = {}

    def __call__(self, origin: str, has_cookie: bool) -> Headers:
        known = self._listed.get(origin)
        if known is not None:
            return known
        headers = cors_headers(self.config, origin, has_cookie)
        if origin in self._exact and not self.config.is_allow_all_origins:
            self._listed[origin] = headers  # has_cookie matters only when every origin is allowed
        return headers
