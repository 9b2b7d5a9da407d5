"""A provider's discovery document (`/.well-known/openid-configuration`), fetched and cached."""

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from application.ports.oidc import OidcUnavailable

DISCOVERY_PATH = "/.well-known/openid-configuration"


async def get_json(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    try:
        response = await client.get(url, headers={"accept": "application/json"})
    except httpx.HTTPError as error:
        raise OidcUnavailable(f"{url}: {type(error).__name__}") from None
    if response.status_code != 200:
        raise OidcUnavailable(f"{url}: HTTP {response.status_code}")
    try:
        document = response.json()
    except ValueError:
        raise OidcUnavailable(f"{url}: not JSON") from None
    if not isinstance(document, dict):
        raise OidcUnavailable(f"{url}: not a JSON object")
    return document


class DiscoveryCache:
    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        *,
        max_age_seconds: float = 3600.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.url = url
        self._max_age = max_age_seconds
        self._monotonic = monotonic
        self._document: dict[str, Any] | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def document(self) -> dict[str, Any]:
        async with self._lock:
            if self._document is None or self._monotonic() - self._fetched_at > self._max_age:
                document = await get_json(self._client, self.url)
                for name in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
                    if not isinstance(document.get(name), str) or not document[name]:
                        raise OidcUnavailable(f"{self.url}: no {name}")
                self._document = document
                self._fetched_at = self._monotonic()
            return self._document
