"""A provider's discovery document (`/.well-known/openid-configuration`), fetched, checked and
cached. The document says where the code goes (with the client secret), where the signing keys
come from and which issuer tokens must name: a document that fails a check is refused and logged,
and is not cached (the provider answers again once it is fixed)."""

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from application.ports.oidc import OidcUnavailable

log = logging.getLogger("bulwark.sso")

DISCOVERY_PATH = "/.well-known/openid-configuration"
# What Bulwark reads from the document; userinfo is never used.
_REQUIRED = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")


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


def refusal(document: dict[str, Any], issuer: str | None, https_only: bool) -> str | None:
    """Why this document is not the configured provider's, or None.

    `issuer`: the configured issuer the document must name exactly (OpenID Discovery 1.0, 4.3);
    None where it is not known beforehand (an Azure tenant given by name). `https_only` (the
    configured issuer is https): every URL used must be https too, or a tampered or careless
    document would send the code and client secret, or fetch the signing keys, in clear text. The
    host is not pinned: Google's keys are on www.googleapis.com, its issuer accounts.google.com."""
    for name in _REQUIRED:
        if not isinstance(document.get(name), str) or not document[name]:
            return f"no {name}"
    if issuer is not None and document["issuer"] != issuer:
        return f"issuer {document['issuer']!r} is not {issuer!r}"
    schemes = ("https",) if https_only else ("https", "http")
    for name in _REQUIRED:
        parts = urlsplit(document[name])
        if parts.scheme not in schemes or not parts.hostname:
            return f"{name} {document[name]!r} is not {' or '.join(schemes)}://host..."
    return None


class DiscoveryCache:
    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        *,
        issuer: str | None = None,
        https_only: bool = True,
        max_age_seconds: float = 3600.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.url = url
        self._issuer = issuer
        self._https_only = https_only
        self._max_age = max_age_seconds
        self._monotonic = monotonic
        self._document: dict[str, Any] | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def document(self) -> dict[str, Any]:
        async with self._lock:
            if self._document is None or self._monotonic() - self._fetched_at > self._max_age:
                document = await get_json(self._client, self.url)
                reason = refusal(document, self._issuer, self._https_only)
                if reason is not None:
                    # A misconfiguration (ours or the provider's), not an outage: say what.
                    log.error("OIDC discovery document %s refused: %s", self.url, reason)
                    raise OidcUnavailable(f"{self.url}: {reason}")
                self._document = document
                self._fetched_at = self._monotonic()
            return self._document
