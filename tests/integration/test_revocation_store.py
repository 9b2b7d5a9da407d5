"""Contract of the revocation stores (Redis + pub/sub, and in-process), and the Redis store's
propagation between workers, recovery after disconnects and degraded mode."""

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
import redis.asyncio as aioredis

from adapters.revocation.in_process import InProcessRevocationStore, to_micros
from adapters.revocation.redis_store import RedisRevocationStore
from application.errors import DependencyUnavailable
from application.ports.revocation_store import RevocationStore

WATCHER = Path(__file__).with_name("_revocation_watcher.py")
StoreFactory = Callable[..., Awaitable[RevocationStore]]


def ids() -> tuple[UUID, UUID, UUID]:
    return uuid4(), uuid4(), uuid4()


def now() -> datetime:
    return datetime.now(UTC)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 3.0) -> float:
    """Seconds until `check` held; fails if it did not within `within`."""
    started = time.perf_counter()
    while not await check():
        if time.perf_counter() - started > within:
            pytest.fail(f"condition not met within {within} s")
        await asyncio.sleep(0.001)
    return time.perf_counter() - started


@pytest.fixture
async def make_redis_store(
    redis_url: str, redis_namespace: str, redis_client: aioredis.Redis
) -> AsyncIterator[Callable[..., Awaitable[RedisRevocationStore]]]:
    """Started stores on the test's namespace, each with a client of its own (like workers)."""
    made: list[tuple[RedisRevocationStore, aioredis.Redis]] = []

    async def make(url: str = redis_url, name: str = "", **kwargs: Any) -> RedisRevocationStore:
        client = aioredis.from_url(url, socket_connect_timeout=1, client_name=name or None)
        store = RedisRevocationStore(client, redis_namespace, **kwargs)
        made.append((store, client))
        await store.start()
        return store

    yield make
    for store, client in made:
        await store.stop()
        await client.aclose()


@pytest.fixture(params=["redis", "in_process"])
def make_store(request: pytest.FixtureRequest) -> StoreFactory:
    if request.param == "in_process":

        async def make(**kwargs: Any) -> RevocationStore:
            return InProcessRevocationStore(**kwargs)

        return make
    factory: StoreFactory = request.getfixturevalue("make_redis_store")
    return factory


# -- contract, both stores


async def test_revoked_session_is_revoked_at_once_in_the_same_store(
    make_store: StoreFactory,
) -> None:
    store = await make_store()
    session, user, org = ids()
    issued_at = now()
    assert not await store.is_revoked(session, user, org, issued_at)

    await store.revoke_session(session, now() + timedelta(minutes=30))

    assert await store.is_revoked(session, user, org, issued_at)
    assert not await store.is_revoked(uuid4(), user, org, issued_at)  # other sessions live on
    assert await store.healthy()


async def test_user_not_before_revokes_tokens_issued_before_it_only(
    make_store: StoreFactory,
) -> None:
    store = await make_store()
    session, user, org = ids()
    logout_all = now()

    await store.set_user_not_before(user, logout_all)

    assert await store.is_revoked(session, user, org, logout_all - timedelta(microseconds=1))
    assert not await store.is_revoked(session, user, org, logout_all)
    assert not await store.is_revoked(session, user, org, logout_all + timedelta(seconds=1))
    # Another user of the same org is untouched.
    assert not await store.is_revoked(session, uuid4(), org, logout_all - timedelta(minutes=1))


async def test_org_not_before_revokes_tokens_of_every_member_issued_before_it_only(
    make_store: StoreFactory,
) -> None:
    store = await make_store()
    session, user, org = ids()
    cutoff = now()

    await store.set_org_not_before(org, cutoff)

    assert await store.is_revoked(session, user, org, cutoff - timedelta(seconds=1))
    assert await store.is_revoked(uuid4(), uuid4(), org, cutoff - timedelta(seconds=1))
    assert not await store.is_revoked(session, user, org, cutoff + timedelta(seconds=1))
    assert not await store.is_revoked(session, user, uuid4(), cutoff - timedelta(seconds=1))


async def test_not_before_never_moves_back(make_store: StoreFactory) -> None:
    store = await make_store()
    session, user, org = ids()
    later = now()

    await store.set_user_not_before(user, later)
    await store.set_user_not_before(user, later - timedelta(minutes=5))
    await store.set_org_not_before(org, later)
    await store.set_org_not_before(org, later - timedelta(minutes=5))

    issued_between = later - timedelta(minutes=1)
    assert await store.is_revoked(session, user, uuid4(), issued_between)
    assert await store.is_revoked(session, uuid4(), org, issued_between)


async def test_naive_datetimes_are_refused_rather_than_guessed(make_store: StoreFactory) -> None:
    store = await make_store()
    session, user, org = ids()

    with pytest.raises(ValueError):
        await store.set_user_not_before(user, datetime.now())
    with pytest.raises(ValueError):
        await store.is_revoked(session, user, org, datetime.now())


async def test_entries_past_the_lifetime_of_their_tokens_are_purged_from_memory(
    make_store: StoreFactory,
) -> None:
    fake_now = [to_micros(now())]
    store = await make_store(max_token_ttl_seconds=900, clock=lambda: fake_now[0])
    session, user, org = ids()
    instant = now()
    await store.revoke_session(session, instant + timedelta(seconds=60))
    await store.set_user_not_before(user, instant)
    await store.set_org_not_before(org, instant)
    old_token = instant - timedelta(seconds=1)

    fake_now[0] += 50 * 1_000_000  # within the lifetimes: everything kept
    assert await store.is_revoked(session, uuid4(), uuid4(), old_token)
    assert await store.is_revoked(uuid4(), user, uuid4(), old_token)

    # Past the session's expiry and the longest token lifetime (+ margin): tokens issued before
    # are expired anyway, so the entries are dropped and memory stays bounded.
    fake_now[0] += 3600 * 1_000_000
    assert not await store.is_revoked(session, uuid4(), uuid4(), old_token)
    assert not await store.is_revoked(uuid4(), user, uuid4(), old_token)
    assert not await store.is_revoked(uuid4(), uuid4(), org, old_token)


# -- Redis: propagation between workers


@pytest.mark.redis
async def test_another_worker_sees_a_revocation_within_100_ms(
    make_redis_store: Callable[..., Awaitable[RedisRevocationStore]],
) -> None:
    worker_a = await make_redis_store()
    worker_b = await make_redis_store()
    session, user, org = ids()
    issued_at = now() - timedelta(seconds=1)

    await worker_a.revoke_session(session, now() + timedelta(minutes=15))
    session_latency = await eventually(lambda: worker_b.is_revoked(session, uuid4(), uuid4(), issued_at))
    await worker_a.set_user_not_before(user, now())
    user_latency = await eventually(lambda: worker_b.is_revoked(uuid4(), user, uuid4(), issued_at))
    await worker_a.set_org_not_before(org, now())
    org_latency = await eventually(lambda: worker_b.is_revoked(uuid4(), uuid4(), org, issued_at))

    assert max(session_latency, user_latency, org_latency) < 0.1


@pytest.mark.redis
@pytest.mark.slow
async def test_a_worker_in_another_process_sees_a_revocation_within_100_ms(
    redis_url: str,
    redis_namespace: str,
    make_redis_store: Callable[..., Awaitable[RedisRevocationStore]],
) -> None:
    worker_a = await make_redis_store()
    session, user, org = ids()
    watcher = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WATCHER),
        redis_url,
        redis_namespace,
        str(session),
        str(user),
        str(org),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert watcher.stdout is not None
        ready = await asyncio.wait_for(watcher.stdout.readline(), 20)
        assert ready == b"ready\n"

        revoked_at = time.time()
        await worker_a.revoke_session(session, now() + timedelta(minutes=15))

        seen = (await asyncio.wait_for(watcher.stdout.readline(), 10)).decode().strip()
        assert seen != "timeout"
        assert float(seen) - revoked_at < 0.1
    finally:
        _, errors = await watcher.communicate()
    assert watcher.returncode == 0, errors.decode()


@pytest.mark.redis
async def test_a_worker_started_later_loads_the_revocations_already_made(
    make_redis_store: Callable[..., Awaitable[RedisRevocationStore]],
) -> None:
    worker_a = await make_redis_store()
    session, user, org = ids()
    issued_at = now() - timedelta(seconds=1)
    await worker_a.revoke_session(session, now() + timedelta(minutes=15))
    await worker_a.set_user_not_before(user, now())
    await worker_a.set_org_not_before(org, now())

    worker_b = await make_redis_store()

    assert await worker_b.is_revoked(session, uuid4(), uuid4(), issued_at)
    assert await worker_b.is_revoked(uuid4(), user, uuid4(), issued_at)
    assert await worker_b.is_revoked(uuid4(), uuid4(), org, issued_at)


# -- Redis: nothing is lost while a subscriber is disconnected


@pytest.mark.redis
async def test_a_revocation_made_while_a_worker_was_stopped_is_seen_after_it_restarts(
    make_redis_store: Callable[..., Awaitable[RedisRevocationStore]],
) -> None:
    worker_a = await make_redis_store()
    worker_b = await make_redis_store()
    session, user, org = ids()
    await worker_b.stop()
    assert not await worker_b.healthy()

    await worker_a.revoke_session(session, now() + timedelta(minutes=15))
    await asyncio.sleep(0.05)
    assert not await worker_b.is_revoked(session, user, org, now())  # it missed the message

    await worker_b.start()

    assert await worker_b.healthy()
    assert await worker_b.is_revoked(session, user, org, now())


@pytest.mark.redis
async def test_a_revocation_missed_while_the_subscriber_connection_was_down_is_reloaded(
    make_redis_store: Callable[..., Awaitable[RedisRevocationStore]],
    redis_client: aioredis.Redis,
    redis_namespace: str,
) -> None:
    name = f"bulwark-test-{uuid4().hex[:12]}"
    worker = await make_redis_store(name=name)
    session, user, org = ids()
    # Written to Redis but never published: only a reload can bring it into memory, so this
    # stands for any message published while the subscriber's connection was down.
    expires_us = to_micros(now() + timedelta(minutes=15))
    await redis_client.zadd(f"{redis_namespace}:rev:sessions", {str(session): expires_us})
    await asyncio.sleep(0.05)
    assert not await worker.is_revoked(session, user, org, now())

    subscribers = [
        client["id"]
        for client in await redis_client.client_list()
        if client.get("name") == name and client.get("sub", "0") != "0"
    ]
    assert len(subscribers) == 1
    await redis_client.client_kill_filter(_id=subscribers[0])

    async def unhealthy() -> bool:
        return not await worker.healthy()

    await eventually(unhealthy)  # the caller is told to fall back while it is disconnected
    await eventually(lambda: worker.is_revoked(session, user, org, now()))
    assert await worker.healthy()


# -- Redis: state, expiry and degraded mode


@pytest.mark.redis
async def test_revocations_are_kept_in_redis_until_their_tokens_have_expired(
    make_redis_store: Callable[..., Awaitable[RedisRevocationStore]],
    redis_client: aioredis.Redis,
    redis_namespace: str,
) -> None:
    store = await make_redis_store(max_token_ttl_seconds=900)
    session, user, _ = ids()

    await store.revoke_session(session, now() + timedelta(seconds=120))
    await store.set_user_not_before(user, now())

    session_ttl = await redis_client.pttl(f"{redis_namespace}:rev:sessions")
    user_ttl = await redis_client.pttl(f"{redis_namespace}:rev:users")
    assert 115_000 < session_ttl <= 121_000
    assert user_ttl > 900_000  # at least the access-token lifetime
    assert await redis_client.zscore(f"{redis_namespace}:rev:sessions", str(session)) is not None


@pytest.mark.redis
async def test_unreachable_redis_is_reported_unhealthy_logged_once_and_fails_writes(
    make_redis_store: Callable[..., Awaitable[RedisRevocationStore]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.revocation.redis_store")
    store = await make_redis_store(url="redis://127.0.0.1:1/0", reconnect_delay=0.02)
    session, user, org = ids()
    await asyncio.sleep(0.2)  # several reconnect attempts

    assert not await store.healthy()
    with pytest.raises(DependencyUnavailable):
        await store.revoke_session(session, now() + timedelta(minutes=15))
    # The worker that made the change still honours it while the caller falls back.
    assert await store.is_revoked(session, user, org, now())
    warnings = [r for r in caplog.records if r.name == "adapters.revocation.redis_store"]
    assert len(warnings) == 1
    assert str(session) not in caplog.text


@pytest.mark.redis
async def test_a_revocation_redis_refused_is_resent_and_reaches_the_other_workers(
    make_redis_store: Callable[..., Awaitable[RedisRevocationStore]],
    redis_client: aioredis.Redis,
    redis_namespace: str,
) -> None:
    # The writer re-sends on its subscriber's ticks; 0.5 s ticks, not tighter: its pub/sub ping
    # must come back within three of them, and a loaded machine can miss 150 ms.
    writer = await make_redis_store(ping_interval=0.5)
    reader = await make_redis_store()
    session = uuid4()
    key = f"{redis_namespace}:rev:sessions"
    await redis_client.set(key, "not a sorted set")  # every write to it now fails (WRONGTYPE)

    with pytest.raises(DependencyUnavailable):
        await writer.revoke_session(session, datetime.now(UTC) + timedelta(minutes=15))
    assert await writer.is_revoked(session, uuid4(), uuid4(), datetime.now(UTC))  # locally at once
    assert not await writer.healthy()  # its own checks go to the database meanwhile
    assert not await reader.is_revoked(session, uuid4(), uuid4(), datetime.now(UTC))

    await redis_client.delete(key)  # Redis accepts writes again
    deadline = asyncio.get_running_loop().time() + 15
    while not await reader.is_revoked(session, uuid4(), uuid4(), datetime.now(UTC)):
        assert asyncio.get_running_loop().time() < deadline, "the refused revocation was never re-sent"
        await asyncio.sleep(0.02)
    assert await writer.healthy()
