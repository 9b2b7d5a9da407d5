"""cTrader's OAuth token endpoint over httpx.

cTrader takes token requests as HTTP GET with the client secret and the code or refresh token in
the query, and reports errors as `errorCode`/`description` in the body, often under HTTP 200. So
the body is checked before the status, and the request URL is never allowed into an exception
message or a log line (httpx's own request log is filtered below)."""

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from adapters.brokers.ctrader.redaction import error_code, scrub
from application.ports.ctrader import (
    BrokerNotReached,
    BrokerRefused,
    BrokerTokenInvalid,
    BrokerTokens,
    BrokerUnavailable,
)

SENSITIVE_QUERY_KEYS = frozenset({"client_secret", "code", "refresh_token", "access_token", "token"})


class _RedactHttpxUrls(logging.Filter):
    """httpx logs every request URL at INFO; ours carry the client secret and a code or token."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(_redacted_url(a) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


def _redacted_url(url: httpx.URL) -> httpx.URL:
    if not url.query:
        return url
    pairs = [
        (key, "[redacted]" if key in SENSITIVE_QUERY_KEYS else value)
        for key, value in parse_qsl(url.query.decode("ascii", "replace"), keep_blank_values=True)
    ]
    return url.copy_with(query=urlencode(pairs).encode("ascii"))


_HTTPX_FILTER = _RedactHttpxUrls()
if not any(isinstance(f, _RedactHttpxUrls) for f in logging.getLogger("httpx").filters):
    logging.getLogger("httpx").addFilter(_HTTPX_FILTER)


class HttpxCtraderOAuth:
    """`CtraderOAuth` against cTrader's `/apps/auth` and `/apps/token`."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        auth_url: str,
        token_url: str,
        timeout_seconds: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not math.isfinite(timeout_seconds) or timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be a positive number")
        self._client_id = client_id
        self._client_secret = client_secret
        self._redirect_uri = redirect_uri
        self._auth_url = auth_url
        self._token_url = token_url
        self._timeout = timeout_seconds
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False)

    def __repr__(self) -> str:
        return f"HttpxCtraderOAuth(client_id={self._client_id!r}, token_url={self._token_url!r})"

    def authorization_url(self, *, state: str, scope: str) -> str:
        parts = urlsplit(self._auth_url)
        params = urlencode(
            {"client_id": self._client_id, "redirect_uri": self._redirect_uri, "scope": scope, "state": state}
        )
        query = f"{parts.query}&{params}" if parts.query else params
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))

    async def exchange_code(self, code: str) -> BrokerTokens:
        params = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self._redirect_uri,
            "client_id": self._client_id,
            "client_secret": self._client_secret,
        }
        return await self._token_request(params, refused=BrokerRefused, secrets=(code,))

    async def refresh(self, refresh_token: str) -> BrokerTokens:
        params = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": self._client_id,
            "client_secret": self._client_secret,
        }
        return await self._token_request(params, refused=_refresh_refusal, secrets=(refresh_token,))

    async def close(self) -> None:
        """Closes the HTTP client if this adapter created it (a passed-in client is the caller's)."""
        if self._owns_client:
            await self._client.aclose()

    async def _token_request(
        self, params: dict[str, str], *, refused: "Refusal", secrets: tuple[str, ...]
    ) -> BrokerTokens:
        grant = params["grant_type"]
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._client.get(
                    self._token_url, params=params, follow_redirects=False, timeout=self._timeout
                )
        except (httpx.ConnectError, httpx.ConnectTimeout):
            # The request never left: the refresh token is certainly unspent.
            raise BrokerNotReached(f"cTrader token endpoint unreachable ({grant})") from None
        except (TimeoutError, httpx.TimeoutException):
            # `from None`: httpx's exceptions carry the request, whose URL holds the secret.
            raise BrokerUnavailable(f"cTrader token endpoint timed out ({grant})") from None
        except (httpx.HTTPError, httpx.InvalidURL, OSError):
            raise BrokerUnavailable(f"cTrader token endpoint unreachable ({grant})") from None
        return self._read_answer(response, grant, refused, (*secrets, self._client_secret))

    def _read_answer(
        self,
        response: httpx.Response,
        grant: str,
        refused: "Refusal",
        secrets: tuple[str, ...],
    ) -> BrokerTokens:
        status = response.status_code
        if status >= 500:
            # Outcome unknown: a refresh may have rotated the token before the server failed.
            raise BrokerUnavailable(f"cTrader token endpoint answered HTTP {status} ({grant})")
        body = _json_object(response)
        if body is not None and "errorCode" in body:
            raise refused(error_code(body["errorCode"], secrets), scrub(body.get("description", ""), secrets))
        if status == 429:
            # Throttled before anything was done: a refresh token sent in it is unspent.
            raise BrokerNotReached(f"cTrader token endpoint throttled us ({grant})")
        if 400 <= status < 500:
            raise BrokerRefused(f"http_{status}")
        if status != 200:
            raise BrokerUnavailable(f"cTrader token endpoint answered HTTP {status} ({grant})")
        if body is None:
            raise BrokerUnavailable(f"cTrader token endpoint answered something other than JSON ({grant})")
        return _tokens(body, grant)


Refusal = Callable[[str, str], BrokerRefused]

# What cTrader answers for a refresh token that is dead (spent, expired, or the user revoked us).
# Any other error code (a bad request, our own client credentials) says nothing about the token.
DEAD_TOKEN_CODES = frozenset(
    {"ACCESS_DENIED", "INVALID_GRANT", "invalid_grant", "CH_ACCESS_TOKEN_INVALID", "OA_AUTH_TOKEN_EXPIRED"}
)


def _refresh_refusal(code: str, description: str) -> BrokerRefused:
    if code in DEAD_TOKEN_CODES:
        return BrokerTokenInvalid(code, description)
    return BrokerRefused(code, description)


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _tokens(body: dict[str, Any], grant: str) -> BrokerTokens:
    access = body.get("accessToken")
    refresh = body.get("refreshToken")
    expires_in = body.get("expiresIn")
    token_type = body.get("tokenType", "bearer")
    if (
        not isinstance(access, str)
        or not access
        or not isinstance(refresh, str)
        or not refresh
        or isinstance(expires_in, bool)
        or not isinstance(expires_in, int)
        or expires_in <= 0
        or not isinstance(token_type, str)
    ):
        raise BrokerUnavailable(f"cTrader token answer lacks or mangles its fields ({grant})")
    return BrokerTokens(
        access_token=access, refresh_token=refresh, expires_in=expires_in, token_type=token_type.lower()
    )
