"""Checking the Redis rate limiter's keys for stragglers.

Every admitted hit sets the key's expiry to its window (PEXPIRE in the same script as the ZADD),
and a refused hit adds nothing, so a key normally dies on its own within its window of the last
hit. Only a key written otherwise (by hand, by an older version, or restored from a snapshot
without its TTL) could stay for ever. This walks the keys with SCAN (never KEYS, which blocks the
server) and, for a key with no expiry only, drops entries older than the longest window and gives
it that expiry: its counting is unchanged (an entry older than any window counts for nothing)."""

import redis.asyncio as aioredis

from adapters.limiter.redis_sliding_window import window_key
from application.ports.housekeeping import LimiterKeyCheck

# KEYS[1]: the key; ARGV[1]: the longest window in microseconds. 1 when repaired, 0 when it already
# expires (or is not a limiter's sorted set). Atomic, so a concurrent hit is never lost.
_TRIM = """
if redis.call('PTTL', KEYS[1]) ~= -1 then return 0 end
if redis.call('TYPE', KEYS[1]).ok ~= 'zset' then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - window))
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
end
return 1
"""


class RedisRateLimitKeys:
    """`RateLimitKeys` over the keys `RedisSlidingWindowLimiter` writes (`{namespace}:rl:*`)."""

    def __init__(self, client: aioredis.Redis, namespace: str, *, scan_count: int = 1000) -> None:
        self._client = client
        self._pattern = window_key(namespace, "*")
        self._scan_count = scan_count
        self._trim = client.register_script(_TRIM)

    async def trim(self, longest_window_seconds: float) -> LimiterKeyCheck:
        window = max(1, round(longest_window_seconds * 1_000_000))
        checked = repaired = 0
        batch: list[bytes] = []
        async for key in self._client.scan_iter(match=self._pattern, count=self._scan_count):
            batch.append(key)
            if len(batch) >= self._scan_count:
                checked, repaired = await self._check(batch, window, checked, repaired)
                batch = []
        checked, repaired = await self._check(batch, window, checked, repaired)
        return LimiterKeyCheck(checked, repaired, "Redis keys carry their window as TTL")

    async def _check(self, keys: list[bytes], window: int, checked: int, repaired: int) -> tuple[int, int]:
        if not keys:
            return checked, repaired
        # TTLs in one round trip; the script runs only for the (normally absent) keys without one.
        async with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.pttl(key)
            ttls = await pipe.execute()
        for key, ttl in zip(keys, ttls, strict=True):
            if ttl == -1:
                repaired += int(await self._trim(keys=[key], args=[window]))
        return checked + len(keys), repaired
