"""Bridge keys that fail, counted per address, for the routes that check a key on someone else's
behalf (`/api/v1/authz/bridge`, forward-auth): a gateway forwards whatever it is sent, and a key
naming a fresh random id costs a database lookup each time. Keys that check out are never
counted, so a busy gateway is never slowed; an address past its limit of failures gets no lookup
at all (429) until the window lets it, remembered in this worker without a round trip."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from application.bridge_keys import BridgeKeys, InvalidApiKey
from application.errors import RateLimited
from application.ports.bridge_repository import BridgeStanding
from application.ports.clock import Clock
from application.ports.rate_limiter import RateLimit, RateLimiter
from domain.address_blocks import address_block

BLOCKED_MAX = 100_000


@dataclass
class BridgeKeyLookups:
    keys: BridgeKeys
    limiter: RateLimiter
    clock: Clock
    limits: tuple[RateLimit, ...]
    _blocked: dict[str, datetime] = field(default_factory=dict)

    async def authenticate(self, key: str, ip: str) -> BridgeStanding:
        """`BridgeKeys.authenticate`, for a caller asking about a key it was handed."""
        standing = await self.keys.warm(key)
        if standing is not None:
            return standing
        self.check(ip)
        try:
            return await self.keys.authenticate(key)
        except InvalidApiKey:
            await self.failed(ip)
            raise

    def check(self, ip: str) -> None:
        """Before a lookup: refused while this address is over its limit of failures."""
        until = self._blocked.get(address_block(ip))
        if until is None:
            return
        left = (until - self.clock.now()).total_seconds()
        if left > 0:
            raise RateLimited(left)
        self._blocked.pop(address_block(ip), None)

    async def failed(self, ip: str) -> None:
        block = address_block(ip)
        checks = [(f"bridge-key-failure:{block}:{i}", limit) for i, limit in enumerate(self.limits)]
        refused = [d.retry_after for d in await self.limiter.hit_many(checks) if not d.allowed]
        if refused:
            if len(self._blocked) >= BLOCKED_MAX:
                self._blocked.pop(next(iter(self._blocked)))
            self._blocked[block] = self.clock.now() + timedelta(seconds=max(refused))
