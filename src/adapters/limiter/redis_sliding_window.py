"""Exact sliding-window rate limiter shared by every worker and instance through Redis.

Each key is a sorted set of admitted requests scored by the Redis server's own clock, so instances
with skewed clocks agree on the window. Check-and-add runs as one Lua script: atomic on the server,
so concurrent hits from many processes can never admit more than the limit."""

import uuid

import redis.asyncio as aioredis

from application.ports.rate_limiter import LimitDecision, RateLimit

# KEYS[1]: the window's sorted set. ARGV: limit, window (microseconds), unique member.
# Scores are server-clock microseconds; '%.0f' keeps them exact (Lua's tostring would round to
# 14 significant digits). An entry counts while score > now - window, i.e. it leaves the window at
# score + window. Returns {admitted, remaining, retry_after_microseconds}.
_HIT_SCRIPT = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.0f', now - window))
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, string.format('%.0f', now), ARGV[3])
  redis.call('PEXPIRE', key, math.ceil(window / 1000))
  return {1, limit - count - 1, 0}
end
if count == 0 or limit < 1 then
  return {0, 0, window}
end
-- Admitting needs count - limit + 1 entries to leave; the last of them is at this rank.
local rank = count - limit
local entry = redis.call('ZRANGE', key, rank, rank, 'WITHSCORES')
local retry = tonumber(entry[2]) + window - now
if retry < 1 then
  retry = 1
end
return {0, 0, retry}
"""


class RedisSlidingWindowLimiter:
    """`RateLimiter` on Redis. Keys are `{namespace}:rl:{key}`."""

    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self._client = client
        self._namespace = namespace
        self._script = client.register_script(_HIT_SCRIPT)

    def _key(self, key: str) -> str:
        return f"{self._namespace}:rl:{key}"

    async def hit(self, key: str, limit: RateLimit) -> LimitDecision:
        window_us = max(1, round(limit.window_seconds * 1_000_000))
        admitted, remaining, retry_us = await self._script(
            keys=[self._key(key)],
            # A random member: two hits in the same microsecond must both count.
            args=[limit.limit, window_us, uuid.uuid4().hex],
        )
        return LimitDecision(
            allowed=bool(admitted), remaining=int(remaining), retry_after=int(retry_us) / 1_000_000
        )

    async def reset(self, key: str) -> None:
        await self._client.delete(self._key(key))
