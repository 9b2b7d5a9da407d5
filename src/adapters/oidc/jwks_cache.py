"""A provider's signing keys, cached; an id_token naming an unknown `kid` causes one refetch
(a key rotation), and such refetches are rate-limited so tokens with made-up key ids cannot
turn us into a flood against the provider."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from application.ports.oidc import OidcUnavailable

Fetch = Callable[[], Awaitable[dict[str, Any]]]


class JwksCache:
    def __init__(
        self,
        fetch: Fetch,
        *,
        max_age_seconds: float = 3600.0,
        min_refetch_seconds: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._max_age = max_age_seconds
        self._min_refetch = min_refetch_seconds
        self._monotonic = monotonic
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._last_forced: float | None = None
        self._lock = asyncio.Lock()

    async def keys(self) -> KeySet:
        async with self._lock:
            if self._keys is None or self._monotonic() - self._fetched_at > self._max_age:
                await self._load()
            assert self._keys is not None
            return self._keys

    async def refetch_for_unknown_kid(self) -> KeySet | None:
        """The keys fetched again, or None when a kid-miss refetch ran less than
        `min_refetch_seconds` ago (the cached keys stand)."""
        async with self._lock:
            now = self._monotonic()
            if self._last_forced is not None and now - self._last_forced < self._min_refetch:
                return None
            self._last_forced = now
            await self._load()
            return self._keys

    def has_kid(self, kid: str | None) -> bool:
        return self._keys is not None and any(key.kid == kid for key in self._keys.keys)

    async def _load(self) -> None:
        document = await self._fetch()
        try:
            self._keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as error:
            raise OidcUnavailable(f"the provider's JWKS is not usable: {type(error).__name__}") from None
        self._fetched_at = self._monotonic()
