"""Exact sliding-window rate limiter shared by every worker and instance through Redis.

Each key is a sorted set of admitted requests scored by the Redis server's own clock, so instances
with skewed clocks agree on the window. Check-and-add runs as one Lua script: atomic on the server,
so concurrent hits from many processes can never admit more than the limit."""

import itertools
import os
import secrets
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from application.errors import DependencyUnavailable
from application.ports.rate_limiter import LimitDecision, RateLimit

# The windows' part of a script, for the first `n` KEYS (one sorted set per window; `n` is set
# before it). ARGV[1]: a unique member; then limit, window (microseconds) per key. Scores are
# server-clock microseconds; '%.0f' keeps them exact (Lua's tostring would round to 14
# significant digits). An entry counts while score > now - window, i.e. it leaves the window at
# score + window. Leaves {admitted, remaining, retry_after_microseconds} per key, flattened, in
# `out`: the keys of one request (e.g. per-IP and per-account tiers) cost one round trip, not one
# each. The bridges' presence script runs the same part before its own.
WINDOWS_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local member = ARGV[1]
local out = {}
for i = 1, n do
  local key = KEYS[i]
  local limit = tonumber(ARGV[2 * i])
  local window = tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.0f', now - window))
  local count = redis.call('ZCARD', key)
  if count < limit then
    redis.call('ZADD', key, string.format('%.0f', now), member)
    redis.call('PEXPIRE', key, math.ceil(window / 1000))
    out[#out + 1] = 1; out[#out + 1] = limit - count - 1; out[#out + 1] = 0
  elseif count == 0 or limit < 1 then
    out[#out + 1] = 0; out[#out + 1] = 0; out[#out + 1] = window
  else
    -- Admitting needs count - limit + 1 entries to leave; the last of them is at this rank.
    local rank = count - limit
    local entry = redis.call('ZRANGE', key, rank, rank, 'WITHSCORES')
    local retry = tonumber(entry[2]) + window - now
    if retry < 1 then
      retry = 1
    end
    out[#out + 1] = 0; out[#out + 1] = 0; out[#out + 1] = retry
  end
end
"""
_HIT_SCRIPT = "local n = #KEYS\n" + WINDOWS_LUA + "return out\n"


class _Members:
    """Members no other hit shares, in any process: two hits in the same microsecond must both
    count (a shared member would count once). A random prefix per process (drawn again in a
    forked child), then a counter: cheaper than a uuid4 per hit."""

    def __init__(self) -> None:
        self._pid = -1
        self._prefix = ""
        self._counter = itertools.count()

    def next(self) -> str:
        if self._pid != os.getpid():
            self._pid, self._prefix, self._counter = os.getpid(), secrets.token_hex(8), itertools.count()
        return f"{self._prefix}{next(self._counter):x}"


_MEMBERS = _Members()


def window_args(limits: Sequence[RateLimit]) -> list[str | int]:
    """ARGV for `WINDOWS_LUA`: a unique member, then limit and window per key."""
    args: list[str | int] = [_MEMBERS.next()]
    for limit in limits:
        args += [limit.limit, max(1, round(limit.window_seconds * 1_000_000))]
    return args


def decisions_of(flat: Sequence[int]) -> list[LimitDecision]:
    return [
        LimitDecision(
            allowed=bool(flat[i]), remaining=int(flat[i + 1]), retry_after=int(flat[i + 2]) / 1_000_000
        )
        for i in range(0, len(flat), 3)
    ]


def window_key(namespace: str, key: str) -> str:
    return f"{namespace}:rl:{key}"


class LimitsUncountable(DependencyUnavailable):
    """Rate limits cannot be counted right now; try again shortly."""

    code = "rate_limit_unavailable"


class RedisSlidingWindowLimiter:
    """`RateLimiter` on Redis. Keys are `{namespace}:rl:{key}`.

    Fails closed: while Redis cannot be reached nothing limited is admitted (a login would
    otherwise get an unlimited window); the request is refused with `LimitsUncountable`, a 503
    whose Retry-After is `unavailable_retry_after` seconds. When Redis comes back empty every
    window starts again from zero: the limits hold, the counts of the outage are gone."""

    def __init__(
        self, client: aioredis.Redis, namespace: str, *, unavailable_retry_after: float = 5.0
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._script = client.register_script(_HIT_SCRIPT)
        self._unavailable_retry_after = unavailable_retry_after

    def _key(self, key: str) -> str:
        return window_key(self._namespace, key)

    async def hit(self, key: str, limit: RateLimit) -> LimitDecision:
        return (await self.hit_many([(key, limit)]))[0]

    async def hit_many(self, checks: Sequence[tuple[str, RateLimit]]) -> list[LimitDecision]:
        if not checks:
            return []
        if len({key for key, _ in checks}) != len(checks):
            # One member per call: a key named twice would silently count once.
            raise ValueError("hit_many needs distinct keys")
        args = window_args([limit for _, limit in checks])
        try:
            flat = await self._script(keys=[self._key(key) for key, _ in checks], args=args)
        except (RedisError, OSError) as error:
            raise LimitsUncountable(retry_after=self._unavailable_retry_after) from error
        return decisions_of(flat)

    async def reset(self, key: str) -> None:
        try:
            await self._client.delete(self._key(key))
        except (RedisError, OSError) as error:
            raise LimitsUncountable(retry_after=self._unavailable_retry_after) from error
