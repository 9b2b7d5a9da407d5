"""Contract of the sliding-window rate limiters, run against Redis and the in-process variant."""

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from adapters.limiter.in_process import InProcessSlidingWindowLimiter
from adapters.limiter.redis_sliding_window import RedisSlidingWindowLimiter
from application.ports.rate_limiter import RateLimit, RateLimiter

HAMMER = Path(__file__).with_name("_rate_limit_hammer.py")


@pytest.fixture(params=["redis", "in_process"])
def limiter(request: pytest.FixtureRequest, redis_namespace: str) -> RateLimiter:
    if request.param == "in_process":
        return InProcessSlidingWindowLimiter()
    client: aioredis.Redis = request.getfixturevalue("redis_client")
    return RedisSlidingWindowLimiter(client, redis_namespace)


async def test_admits_exactly_the_limit_counting_down_then_refuses_with_retry_after(
    limiter: RateLimiter,
) -> None:
    rate = RateLimit(limit=5, window_seconds=10)

    decisions = [await limiter.hit("login:alice", rate) for _ in range(5)]
    refused = await limiter.hit("login:alice", rate)

    assert [d.allowed for d in decisions] == [True] * 5
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0]
    assert all(d.retry_after == 0 for d in decisions)
    assert not refused.allowed
    assert refused.remaining == 0
    assert 9 < refused.retry_after <= 10


async def test_refusals_are_not_counted_so_retry_after_stays_anchored_to_the_oldest_admission(
    limiter: RateLimiter,
) -> None:
    rate = RateLimit(limit=2, window_seconds=1.0)
    await limiter.hit("k", rate)
    await asyncio.sleep(0.3)
    await limiter.hit("k", rate)

    first = await limiter.hit("k", rate)
    second = await limiter.hit("k", rate)

    # The oldest admission leaves the window ~0.7 s from now, whatever was refused meanwhile.
    assert not first.allowed and not second.allowed
    assert 0.5 < first.retry_after <= 0.72
    assert 0.5 < second.retry_after <= first.retry_after


async def test_window_slides_instead_of_resetting(limiter: RateLimiter) -> None:
    rate = RateLimit(limit=2, window_seconds=0.4)
    assert (await limiter.hit("k", rate)).allowed
    await asyncio.sleep(0.2)
    assert (await limiter.hit("k", rate)).allowed
    refused = await limiter.hit("k", rate)
    assert not refused.allowed

    await asyncio.sleep(refused.retry_after + 0.02)

    # Only the first admission has left: one request fits, the next does not (a fixed window
    # would have reset and admitted both).
    assert (await limiter.hit("k", rate)).allowed
    assert not (await limiter.hit("k", rate)).allowed


async def test_separate_keys_are_counted_independently(limiter: RateLimiter) -> None:
    rate = RateLimit(limit=1, window_seconds=10)
    assert (await limiter.hit("ip:10.0.0.1", rate)).allowed
    assert not (await limiter.hit("ip:10.0.0.1", rate)).allowed

    assert (await limiter.hit("ip:10.0.0.2", rate)).allowed


async def test_reset_forgets_the_key(limiter: RateLimiter) -> None:
    rate = RateLimit(limit=1, window_seconds=10)
    await limiter.hit("k", rate)
    await limiter.hit("other", rate)
    assert not (await limiter.hit("k", rate)).allowed

    await limiter.reset("k")

    assert (await limiter.hit("k", rate)).allowed
    assert not (await limiter.hit("other", rate)).allowed


async def test_many_concurrent_tasks_admit_exactly_the_limit(limiter: RateLimiter) -> None:
    rate = RateLimit(limit=50, window_seconds=30)

    decisions = await asyncio.gather(*(limiter.hit("burst", rate) for _ in range(200)))

    assert sum(d.allowed for d in decisions) == 50
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(50))


async def test_hit_many_counts_each_key_on_its_own_in_order(limiter: RateLimiter) -> None:
    per_ip, per_account = RateLimit(limit=3, window_seconds=10), RateLimit(limit=1, window_seconds=10)

    first = await limiter.hit_many([("ip:1", per_ip), ("account:a", per_account)])
    second = await limiter.hit_many([("ip:1", per_ip), ("account:a", per_account)])

    assert [(d.allowed, d.remaining) for d in first] == [(True, 2), (True, 0)]
    # The account refuses while the IP still admits (and counts): same as two separate hits.
    assert [(d.allowed, d.remaining) for d in second] == [(True, 1), (False, 0)]
    assert 9 < second[1].retry_after <= 10
    assert (await limiter.hit("ip:1", per_ip)).allowed
    assert not (await limiter.hit("ip:1", per_ip)).allowed
    assert await limiter.hit_many([]) == []


async def test_concurrent_hit_many_admit_exactly_the_limit_of_every_key(limiter: RateLimiter) -> None:
    tight, loose = RateLimit(limit=7, window_seconds=30), RateLimit(limit=20, window_seconds=30)

    results = await asyncio.gather(
        *(limiter.hit_many([("tight", tight), ("loose", loose)]) for _ in range(60))
    )

    assert sum(r[0].allowed for r in results) == 7
    assert sum(r[1].allowed for r in results) == 20
    assert sorted(r[0].remaining for r in results if r[0].allowed) == list(range(7))


async def test_hit_many_refuses_a_key_named_twice_and_counts_nothing(limiter: RateLimiter) -> None:
    # One call counts a key once: a repeated key would silently halve its tier.
    tight = RateLimit(limit=1, window_seconds=10)
    with pytest.raises(ValueError, match="distinct"):
        await limiter.hit_many([("dup", tight), ("dup", RateLimit(limit=5, window_seconds=10))])
    assert (await limiter.hit("dup", tight)).allowed


async def test_zero_limit_refuses_everything(limiter: RateLimiter) -> None:
    decision = await limiter.hit("k", RateLimit(limit=0, window_seconds=5))

    assert not decision.allowed
    assert decision.retry_after == 5


@pytest.mark.redis
@pytest.mark.slow
async def test_two_processes_hitting_the_same_key_admit_exactly_the_limit_in_total(
    redis_url: str, redis_namespace: str, redis_client: aioredis.Redis
) -> None:
    # More admissions than one process asks for, so both get some and the last ones are raced
    # for, however far apart a loaded machine starts them (with a limit one process could take
    # alone, CI once saw it take all of it before the other began).
    limit, hits_per_process = 900, 600

    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(HAMMER),
            redis_url,
            redis_namespace,
            "shared",
            str(limit),
            "60",
            str(hits_per_process),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for process in processes:  # both connected and waiting at the start line
        assert process.stdout is not None
        assert (await asyncio.wait_for(process.stdout.readline(), 60)).strip() == b"ready"
    outputs = await asyncio.gather(*(process.communicate(b"go\n") for process in processes))

    assert [p.returncode for p in processes] == [0, 0], [err.decode() for _, err in outputs]
    admitted = [int(out) for out, _ in outputs]
    assert sum(admitted) == limit  # 1,200 hits at one key: exactly the limit, not one more
    assert await redis_client.zcard(f"{redis_namespace}:rl:shared") == limit


@pytest.mark.redis
async def test_redis_window_is_namespaced_and_expires_with_the_window(
    redis_client: aioredis.Redis, redis_namespace: str
) -> None:
    limiter = RedisSlidingWindowLimiter(redis_client, redis_namespace)

    await limiter.hit("login:alice", RateLimit(limit=3, window_seconds=2))

    ttl_ms = await redis_client.pttl(f"{redis_namespace}:rl:login:alice")
    assert 0 < ttl_ms <= 2000


@pytest.mark.redis
async def test_redis_limiter_uses_the_server_clock_not_the_callers(
    redis_client: aioredis.Redis, redis_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A caller whose clock is an hour off must not shift the window of the others.
    limiter = RedisSlidingWindowLimiter(redis_client, redis_namespace)
    rate = RateLimit(limit=1, window_seconds=10)
    assert (await limiter.hit("k", rate)).allowed
    monkeypatch.setattr(time, "time", lambda: 4_000_000_000.0)
    monkeypatch.setattr(time, "time_ns", lambda: 4_000_000_000 * 10**9)

    assert not (await limiter.hit("k", rate)).allowed
    # The admission was scored by the server's clock, not by the (patched) local one.
    entries = await redis_client.zrange(f"{redis_namespace}:rl:k", 0, 0, withscores=True)
    score = float(entries[0][1])
    seconds, micros = await redis_client.time()
    assert abs(score / 1e6 - (seconds + micros / 1e6)) < 5


def test_in_process_limiter_drops_keys_whose_window_has_passed() -> None:
    now = [1000.0]
    clock: Callable[[], float] = lambda: now[0]  # noqa: E731
    limiter = InProcessSlidingWindowLimiter(clock, sweep_interval_seconds=60)
    rate = RateLimit(limit=3, window_seconds=5)

    async def scenario() -> None:
        for i in range(100):
            await limiter.hit(f"ip:{i}", rate)
        assert len(limiter) == 100
        now[0] += 61
        await limiter.hit("ip:new", rate)

    asyncio.run(scenario())

    assert len(limiter) == 1


async def test_in_process_limiter_retry_after_follows_its_clock() -> None:
    now = [50.0]
    limiter = InProcessSlidingWindowLimiter(lambda: now[0])
    rate = RateLimit(limit=2, window_seconds=10)
    await limiter.hit("k", rate)
    now[0] = 53.0
    await limiter.hit("k", rate)
    now[0] = 55.0

    assert (await limiter.hit("k", rate)).retry_after == pytest.approx(5.0)
    now[0] = 60.0
    assert (await limiter.hit("k", rate)).allowed
    assert (await limiter.hit("k", rate)).retry_after == pytest.approx(3.0)


async def test_redis_limiter_fails_closed_with_a_retry_after_when_redis_is_unreachable() -> None:
    """Nothing is admitted uncounted: an unreachable Redis is a `DependencyUnavailable` (503 with
    Retry-After at the edge), never an allowed decision and never an unmapped driver error."""
    from adapters.limiter.redis_sliding_window import LimitsUncountable
    from application.errors import DependencyUnavailable
    from tests.fault_servers import free_port

    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    limiter = RedisSlidingWindowLimiter(client, "nowhere", unavailable_retry_after=7)
    try:
        with pytest.raises(LimitsUncountable) as refused:
            await limiter.hit_many(
                [("login-account:60:a", RateLimit(5, 60)), ("login-ip:60:b", RateLimit(5, 60))]
            )
        assert isinstance(refused.value, DependencyUnavailable)
        assert refused.value.retry_after == 7
        with pytest.raises(LimitsUncountable):
            await limiter.reset("login-account:60:a")
    finally:
        await client.aclose()
