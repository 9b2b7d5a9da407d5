"""Contract of the authz version stores (Redis + pub/sub, and in-process) and of the layered
permission cache (worker memory in front of Redis, or memory only): propagation between workers,
versions that never go back, recovery after disconnects, and failures that read as misses."""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import UUID, uuid4

import pytest
import redis.asyncio as aioredis

from adapters.authz.in_process import InProcessAuthzVersions
from adapters.authz.permission_cache import LayeredPermissionCache
from adapters.authz.redis_versions import RedisAuthzVersions
from application.errors import DependencyUnavailable
from application.ports.authz_cache import AuthzVersions, PermissionCache

VersionsFactory = Callable[..., Awaitable[AuthzVersions]]
CacheFactory = Callable[..., PermissionCache]
TRADER = frozenset({"orders:create", "orders:read", "positions:read"})
UNREACHABLE = "redis://127.0.0.1:1/0"


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 3.0) -> float:
    """Seconds until `check` held; fails if it did not within `within`."""
    started = time.perf_counter()
    while not await check():
        if time.perf_counter() - started > within:
            pytest.fail(f"condition not met within {within} s")
        await asyncio.sleep(0.001)
    return time.perf_counter() - started


def sees(versions: AuthzVersions, org: UUID, expected: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await versions.current(org) == expected

    return check


@pytest.fixture
async def make_redis_versions(
    redis_url: str, redis_namespace: str, redis_client: aioredis.Redis
) -> AsyncIterator[Callable[..., Awaitable[RedisAuthzVersions]]]:
    """Started stores on the test's namespace, each with a client of its own (like workers)."""
    made: list[tuple[RedisAuthzVersions, aioredis.Redis]] = []

    async def make(url: str = redis_url, name: str = "", **kwargs: Any) -> RedisAuthzVersions:
        client = aioredis.from_url(url, socket_connect_timeout=1, client_name=name or None)
        store = RedisAuthzVersions(client, redis_namespace, **kwargs)
        made.append((store, client))
        await store.start()
        return store

    yield make
    for store, client in made:
        await store.stop()
        await client.aclose()


@pytest.fixture(params=["redis", "in_process"])
def make_versions(request: pytest.FixtureRequest) -> VersionsFactory:
    if request.param == "in_process":

        async def make(**kwargs: Any) -> AuthzVersions:
            return InProcessAuthzVersions(**kwargs)

        return make
    factory: VersionsFactory = request.getfixturevalue("make_redis_versions")
    return factory


@pytest.fixture
async def make_redis_cache(
    redis_url: str, redis_namespace: str, redis_client: aioredis.Redis
) -> AsyncIterator[Callable[..., LayeredPermissionCache]]:
    """Layered caches on the test's namespace, each with a client of its own (like workers)."""
    clients: list[aioredis.Redis] = []

    def make(url: str = redis_url, **kwargs: Any) -> LayeredPermissionCache:
        client = aioredis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        clients.append(client)
        return LayeredPermissionCache(client, redis_namespace, **kwargs)

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture(params=["redis", "memory"])
def make_cache(request: pytest.FixtureRequest, redis_namespace: str) -> CacheFactory:
    if request.param == "memory":

        def make(**kwargs: Any) -> PermissionCache:
            return LayeredPermissionCache(None, redis_namespace, **kwargs)

        return make
    factory: CacheFactory = request.getfixturevalue("make_redis_cache")
    return factory


# -- versions, both stores


async def test_an_org_never_bumped_is_unknown_so_the_caller_reads_the_database(
    make_versions: VersionsFactory,
) -> None:
    versions = await make_versions()

    assert await versions.current(uuid4()) is None
    assert await versions.healthy()


async def test_a_bump_is_seen_at_once_by_the_worker_that_made_it(make_versions: VersionsFactory) -> None:
    versions = await make_versions()
    org, other_org = uuid4(), uuid4()

    await versions.bump(org, 7)

    assert await versions.current(org) == 7
    assert await versions.current(other_org) is None


async def test_versions_never_go_back(make_versions: VersionsFactory) -> None:
    versions = await make_versions()
    org = uuid4()

    await versions.bump(org, 5)
    await versions.bump(org, 3)
    await versions.bump(org, 5)

    assert await versions.current(org) == 5
    await versions.bump(org, 6)
    assert await versions.current(org) == 6


async def test_negative_or_non_integer_versions_are_refused(make_versions: VersionsFactory) -> None:
    versions = await make_versions()
    org = uuid4()

    for bad in (-1, True, 2.0):
        with pytest.raises(ValueError):
            await versions.bump(org, bad)  # type: ignore[arg-type]
    assert await versions.current(org) is None


# -- Redis versions: propagation between workers


@pytest.mark.redis
async def test_another_worker_sees_a_bump_within_100_ms(
    make_redis_versions: Callable[..., Awaitable[RedisAuthzVersions]],
) -> None:
    worker_a = await make_redis_versions()
    worker_b = await make_redis_versions()
    org = uuid4()
    latencies = []

    for version in (1, 2, 3):
        await worker_a.bump(org, version)
        latencies.append(await eventually(sees(worker_b, org, version)))

    assert max(latencies) < 0.1, latencies


@pytest.mark.redis
async def test_a_late_lower_report_from_another_worker_moves_no_worker_back(
    make_redis_versions: Callable[..., Awaitable[RedisAuthzVersions]],
    redis_client: aioredis.Redis,
    redis_namespace: str,
) -> None:
    worker_a = await make_redis_versions()
    worker_b = await make_redis_versions()
    org = uuid4()
    await worker_a.bump(org, 5)
    await eventually(sees(worker_b, org, 5))

    await worker_b.bump(org, 3)  # e.g. a report delayed behind a newer change
    await asyncio.sleep(0.05)

    assert await worker_a.current(org) == 5
    assert await worker_b.current(org) == 5
    assert await redis_client.hget(f"{redis_namespace}:authz:versions", str(org)) == b"5"


@pytest.mark.redis
async def test_a_worker_started_later_loads_the_versions_already_bumped(
    make_redis_versions: Callable[..., Awaitable[RedisAuthzVersions]],
) -> None:
    worker_a = await make_redis_versions()
    org_1, org_2 = uuid4(), uuid4()
    await worker_a.bump(org_1, 4)
    await worker_a.bump(org_2, 11)

    worker_b = await make_redis_versions()

    assert await worker_b.current(org_1) == 4
    assert await worker_b.current(org_2) == 11


@pytest.mark.redis
async def test_bumps_missed_while_the_subscriber_connection_was_down_are_reloaded(
    make_redis_versions: Callable[..., Awaitable[RedisAuthzVersions]],
    redis_client: aioredis.Redis,
    redis_namespace: str,
) -> None:
    name = f"bulwark-test-{uuid4().hex[:12]}"
    worker = await make_redis_versions(name=name, reconnect_delay=0.3)
    other_worker = await make_redis_versions()
    published_org, silent_org = uuid4(), uuid4()
    await worker.bump(published_org, 1)

    subscribers = [
        client["id"]
        for client in await redis_client.client_list()
        if client.get("name") == name and client.get("sub", "0") != "0"
    ]
    assert len(subscribers) == 1
    await redis_client.client_kill_filter(_id=subscribers[0])

    async def unhealthy() -> bool:
        return not await worker.healthy()

    await eventually(unhealthy)
    # While down the worker says "don't know" (the caller reads the database) ...
    assert await worker.current(published_org) is None
    # ... and misses a bump published by another worker, and one written but never published
    # (only the reload after resubscribing can bring that one in).
    await other_worker.bump(published_org, 2)
    await redis_client.hset(f"{redis_namespace}:authz:versions", str(silent_org), "8")

    await eventually(worker.healthy)
    assert await worker.current(published_org) == 2
    assert await worker.current(silent_org) == 8


@pytest.mark.redis
async def test_a_bump_redis_refused_is_resent_until_the_other_workers_see_it(
    make_redis_versions: Callable[..., Awaitable[RedisAuthzVersions]],
    redis_client: aioredis.Redis,
    redis_namespace: str,
) -> None:
    # It re-sends on its subscriber's ticks; 0.5 s ticks, not tighter: its pub/sub ping must come
    # back within three of them, and a loaded machine can miss 150 ms (it then reports unhealthy).
    worker_a = await make_redis_versions(ping_interval=0.5)
    worker_b = await make_redis_versions()
    org = uuid4()
    key = f"{redis_namespace}:authz:versions"
    await redis_client.set(key, "not a hash")  # every write to the hash now fails

    with pytest.raises(DependencyUnavailable):
        await worker_a.bump(org, 3)
    assert await worker_a.current(org) == 3  # the worker that made the change honours it
    await asyncio.sleep(0.1)
    assert await worker_b.current(org) is None

    await redis_client.delete(key)

    # Eventually, not promptly: the property is that the bump is never lost.
    await eventually(sees(worker_b, org, 3), within=15.0)


@pytest.mark.redis
async def test_unreachable_redis_is_unhealthy_answers_unknown_and_fails_bumps_logged_once(
    make_redis_versions: Callable[..., Awaitable[RedisAuthzVersions]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.authz.redis_versions")
    versions = await make_redis_versions(url=UNREACHABLE, reconnect_delay=0.02)
    org = uuid4()
    await asyncio.sleep(0.2)  # several reconnect attempts

    assert not await versions.healthy()
    with pytest.raises(DependencyUnavailable):
        await versions.bump(org, 2)
    # Even its own bump is not vouched for: it may have missed others' higher ones.
    assert await versions.current(org) is None
    warnings = [r for r in caplog.records if r.name == "adapters.authz.redis_versions"]
    assert len(warnings) == 1
    assert str(org) not in caplog.text


# -- permission cache, both layers


async def test_cached_permissions_round_trip(make_cache: CacheFactory) -> None:
    cache = make_cache()
    user, org = uuid4(), uuid4()

    assert await cache.get(user, org, 1) is None
    await cache.put(user, org, 1, TRADER)

    assert await cache.get(user, org, 1) == TRADER


async def test_a_user_without_permissions_is_cached_as_an_empty_set_not_a_miss(
    make_cache: CacheFactory,
) -> None:
    cache = make_cache()
    user, org = uuid4(), uuid4()

    await cache.put(user, org, 1, frozenset())

    assert await cache.get(user, org, 1) == frozenset()


async def test_another_version_user_or_org_is_a_miss(make_cache: CacheFactory) -> None:
    cache = make_cache()
    user, org = uuid4(), uuid4()
    await cache.put(user, org, 1, TRADER)

    assert await cache.get(user, org, 2) is None  # bumped: the old entry is unreachable
    assert await cache.get(uuid4(), org, 1) is None
    assert await cache.get(user, uuid4(), 1) is None


async def test_memory_keeps_at_most_the_configured_entries_dropping_the_least_recently_used(
    redis_namespace: str,
) -> None:
    cache = LayeredPermissionCache(None, redis_namespace, local_max_entries=3)
    org = uuid4()
    users = [uuid4() for _ in range(4)]
    for user in users[:3]:
        await cache.put(user, org, 1, TRADER)
    assert await cache.get(users[0], org, 1) == TRADER  # now the most recently used

    await cache.put(users[3], org, 1, TRADER)

    assert await cache.get(users[1], org, 1) is None  # evicted
    for user in (users[0], users[2], users[3]):
        assert await cache.get(user, org, 1) == TRADER


# -- permission cache in Redis


@pytest.mark.redis
async def test_another_worker_gets_cached_permissions_from_redis_then_from_its_memory(
    make_redis_cache: Callable[..., LayeredPermissionCache],
    redis_client: aioredis.Redis,
    redis_namespace: str,
) -> None:
    worker_a, worker_b = make_redis_cache(), make_redis_cache()
    user, org = uuid4(), uuid4()
    key = f"{redis_namespace}:perm:{org}:{user}:4"

    await worker_a.put(user, org, 4, TRADER)

    assert 3590 <= await redis_client.ttl(key) <= 3600
    assert await worker_b.get(user, org, 4) == TRADER
    await redis_client.delete(key)
    assert await worker_b.get(user, org, 4) == TRADER  # filled its memory: no round trip
    assert await make_redis_cache().get(user, org, 4) is None


@pytest.mark.redis
async def test_a_malformed_redis_entry_is_a_miss_never_permissions(
    make_redis_cache: Callable[..., LayeredPermissionCache],
    redis_client: aioredis.Redis,
    redis_namespace: str,
) -> None:
    cache = make_redis_cache()
    user, org = uuid4(), uuid4()
    await redis_client.set(f"{redis_namespace}:perm:{org}:{user}:1", "orders:create")
    await redis_client.set(f"{redis_namespace}:perm:{org}:{user}:2", '{"orders:create": true}')

    assert await cache.get(user, org, 1) is None
    assert await cache.get(user, org, 2) is None


@pytest.mark.redis
async def test_unreachable_redis_is_a_miss_put_does_not_raise_and_it_is_logged_once(
    make_redis_cache: Callable[..., LayeredPermissionCache],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.authz.permission_cache")
    cache = make_redis_cache(url=UNREACHABLE, retry_after_seconds=0)
    user, org = uuid4(), uuid4()

    assert await cache.get(user, org, 1) is None
    await cache.put(user, org, 1, TRADER)
    assert await cache.get(uuid4(), org, 1) is None
    await cache.put(uuid4(), org, 1, TRADER)

    assert await cache.get(user, org, 1) == TRADER  # this worker's memory still serves
    warnings = [r for r in caplog.records if r.name == "adapters.authz.permission_cache"]
    assert len(warnings) == 1
    assert str(user) not in caplog.text and "orders:create" not in caplog.text


@pytest.mark.redis
async def test_after_a_redis_failure_the_cache_leaves_redis_alone_for_a_while(
    make_redis_cache: Callable[..., LayeredPermissionCache],
) -> None:
    cache = make_redis_cache(url=UNREACHABLE, retry_after_seconds=60)
    user, org = uuid4(), uuid4()
    assert await cache.get(user, org, 1) is None  # the failing attempt

    started = time.perf_counter()
    for _ in range(1000):
        assert await cache.get(uuid4(), org, 1) is None
    assert time.perf_counter() - started < 0.1  # no connection attempts on the hot path
