"""The pipelined Redis connection against a real Redis: every caller gets its own reply however
many share the connection, an error or a cancelled caller touches no other call, and a dead or
silent connection fails the calls waiting on it and is replaced by the next call.

Everything runs in db 15 (the URL's db, which the connection must select) under this test's own
key prefix; nothing here flushes data. A reply that does not come is made with a blocking command
on this connection only (BLPOP on a key of our own), not with CLIENT PAUSE, so other users of the
shared server are never stalled."""

import asyncio
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from adapters.redis_pipelined import PipelinedRedis, PipelinedScript

pytestmark = pytest.mark.redis

DB = 15


def with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f":{password}@{host}{port}"))


@pytest.fixture
def db_url(redis_url: str) -> str:
    return with_db(redis_url, DB)


@pytest.fixture
async def inspector(db_url: str, redis_namespace: str) -> AsyncIterator[aioredis.Redis]:
    """redis-py on db 15: looks behind the pipelined connection and deletes this test's keys."""
    client = aioredis.from_url(db_url, socket_connect_timeout=2)
    try:
        yield client
    finally:
        keys = [key async for key in client.scan_iter(match=f"{redis_namespace}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def make_pipelined(db_url: str) -> AsyncIterator[Callable[..., PipelinedRedis]]:
    made: list[PipelinedRedis] = []

    def make(url: str | None = None, **options: Any) -> PipelinedRedis:
        connection = PipelinedRedis(url or db_url, **options)
        made.append(connection)
        return connection

    try:
        yield make
    finally:
        for connection in made:
            await connection.close()


async def client_id_of(connection: PipelinedRedis) -> int:
    return int(await connection.execute("CLIENT", "ID"))


async def until(condition: Callable[[], Awaitable[bool]], seconds: float = 2.0) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_two_thousand_concurrent_calls_each_get_their_own_reply(
    make_pipelined: Callable[..., PipelinedRedis], redis_namespace: str
) -> None:
    redis = make_pipelined()
    values = [f"{i}-{uuid.uuid4().hex}" for i in range(2_000)]
    counters = [f"{redis_namespace}:n:{i % 50}" for i in range(2_000)]

    echoes = [redis.execute("ECHO", value) for value in values]
    increments = [redis.execute("INCRBY", key, i + 1) for i, key in enumerate(counters)]
    replies = await asyncio.gather(*echoes, *increments)

    assert replies[:2_000] == [value.encode() for value in values]
    # Each counter's increments are distinct (i + 1) and answered in the order they were made,
    # so every caller sees exactly the running total up to and including its own increment.
    totals: dict[str, int] = {}
    expected = []
    for i, key in enumerate(counters):
        totals[key] = totals.get(key, 0) + i + 1
        expected.append(totals[key])
    assert replies[2_000:] == expected


async def test_an_error_reply_fails_only_its_own_call(
    make_pipelined: Callable[..., PipelinedRedis], redis_namespace: str
) -> None:
    redis = make_pipelined()
    text_key = f"{redis_namespace}:text"
    counter = f"{redis_namespace}:counter"
    await redis.execute("SET", text_key, "not a number")

    before = redis.execute("ECHO", "before")
    failing = redis.execute("INCR", text_key)
    after = [redis.execute("INCR", counter) for _ in range(3)]
    replies = await asyncio.gather(before, failing, *after, return_exceptions=True)

    assert replies[0] == b"before"
    assert isinstance(replies[1], ResponseError)
    assert "not an integer" in str(replies[1])
    assert replies[2:] == [1, 2, 3]
    assert await redis.execute("ECHO", "later") == b"later"


async def test_the_urls_db_is_selected(
    make_pipelined: Callable[..., PipelinedRedis],
    inspector: aioredis.Redis,
    redis_url: str,
    redis_namespace: str,
) -> None:
    redis = make_pipelined()
    key = f"{redis_namespace}:where"
    await redis.execute("SET", key, "db15")

    assert await inspector.get(key) == b"db15"
    db0 = aioredis.from_url(with_db(redis_url, 0), socket_connect_timeout=2)
    try:
        assert await db0.exists(key) == 0
    finally:
        await db0.aclose()


async def test_a_script_is_loaded_again_after_script_flush(
    make_pipelined: Callable[..., PipelinedRedis], inspector: aioredis.Redis, redis_namespace: str
) -> None:
    redis = make_pipelined()
    # A script of this test's own: Redis has never seen it, so the first call loads it too.
    script = PipelinedScript(redis, f"-- {uuid.uuid4().hex}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])")
    key = f"{redis_namespace}:scripted"

    assert await script([key], [2]) == 2
    await inspector.script_flush("SYNC")  # every worker's scripts are gone; theirs reload as ours
    assert await script([key], [3]) == 5
    assert await script([key], [4]) == 9


async def test_a_connection_killed_by_the_server_fails_its_calls_and_the_next_call_reconnects(
    make_pipelined: Callable[..., PipelinedRedis], inspector: aioredis.Redis, redis_namespace: str
) -> None:
    redis = make_pipelined()
    killed = await client_id_of(redis)
    # In flight when the connection dies: a call blocked on the server and calls queued behind it.
    blocked = asyncio.ensure_future(redis.execute("BLPOP", f"{redis_namespace}:never", 5))
    queued = [asyncio.ensure_future(redis.execute("ECHO", f"queued-{i}")) for i in range(20)]
    await until(lambda: _is_blocked(inspector, killed))

    assert await inspector.client_kill_filter(_id=killed) == 1
    outcomes = await asyncio.wait_for(asyncio.gather(blocked, *queued, return_exceptions=True), 3)

    assert all(isinstance(outcome, RedisConnectionError) for outcome in outcomes), outcomes
    assert await redis.execute("ECHO", "again") == b"again"
    assert await client_id_of(redis) != killed


async def _is_blocked(inspector: aioredis.Redis, client_id: int) -> bool:
    clients = await inspector.client_list()
    return any(int(c["id"]) == client_id and c["cmd"] == "blpop" for c in clients)


async def test_a_reply_that_does_not_come_in_time_fails_the_waiting_calls_and_the_connection_recovers(
    make_pipelined: Callable[..., PipelinedRedis], inspector: aioredis.Redis, redis_namespace: str
) -> None:
    redis = make_pipelined(timeout=0.3)
    silent = await client_id_of(redis)
    list_key = f"{redis_namespace}:late"
    started = time.monotonic()
    blocked = asyncio.ensure_future(redis.execute("BLPOP", list_key, 3))
    queued = [asyncio.ensure_future(redis.execute("ECHO", f"queued-{i}")) for i in range(10)]

    outcomes = await asyncio.wait_for(asyncio.gather(blocked, *queued, return_exceptions=True), 2)
    waited = time.monotonic() - started

    assert all(isinstance(outcome, RedisTimeoutError) for outcome in outcomes), outcomes
    assert 0.3 <= waited < 1.0
    # The silent connection was closed (its late reply can never reach a newer caller) ...
    await until(lambda: _gone(inspector, silent))
    await inspector.rpush(list_key, "late")
    # ... and the next calls get their own replies on a new one.
    assert await redis.execute("ECHO", "recovered") == b"recovered"
    assert await redis.execute("LPOP", list_key) == b"late"
    assert await client_id_of(redis) != silent


async def _gone(inspector: aioredis.Redis, client_id: int) -> bool:
    return all(int(c["id"]) != client_id for c in await inspector.client_list())


async def test_an_unreachable_port_fails_quickly_with_a_connection_error(
    make_pipelined: Callable[..., PipelinedRedis],
) -> None:
    with socket.socket() as probe:  # a port nothing listens on: bound, then released
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    redis = make_pipelined(f"redis://127.0.0.1:{port}/{DB}", connect_timeout=2.0)

    started = time.monotonic()
    with pytest.raises(RedisConnectionError):
        await redis.execute("PING")
    assert time.monotonic() - started < 1.0
    with pytest.raises(RedisConnectionError):  # every call tries again, and fails again
        await redis.execute("PING")


async def test_cancelled_callers_do_not_shift_replies_to_the_others(
    make_pipelined: Callable[..., PipelinedRedis],
) -> None:
    redis = make_pipelined()
    assert await redis.execute("PING") == b"PONG"  # connected: the calls below go straight out
    rng = random.Random(7)
    values = [f"v{i}-{uuid.uuid4().hex[:8]}" for i in range(2_000)]
    calls = [asyncio.ensure_future(redis.execute("ECHO", value)) for value in values]
    await asyncio.sleep(0)  # every call is written and waits for its reply; none is answered yet
    assert not any(call.done() for call in calls)
    first_cut = set(rng.sample(range(1, len(calls)), 300))
    for i in first_cut:
        calls[i].cancel()
    # More cancelled while replies are arriving: some before their reply, some too late to matter.
    assert await calls[0] == values[0].encode()
    second_cut = set(rng.sample(sorted(set(range(1, len(calls))) - first_cut), 300))
    for i in second_cut:
        calls[i].cancel()

    outcomes = await asyncio.gather(*calls, return_exceptions=True)

    cancelled = 0
    for i, (value, outcome) in enumerate(zip(values, outcomes, strict=True)):
        if isinstance(outcome, asyncio.CancelledError):
            assert i in first_cut or i in second_cut
            cancelled += 1
        else:
            assert i not in first_cut
            assert outcome == value.encode()
    assert cancelled >= len(first_cut)
    more = [f"after-{i}" for i in range(50)]
    assert await asyncio.gather(*(redis.execute("ECHO", v) for v in more)) == [v.encode() for v in more]


async def test_a_password_against_a_redis_without_one_fails_clearly_instead_of_hanging(
    make_pipelined: Callable[..., PipelinedRedis], inspector: aioredis.Redis, db_url: str
) -> None:
    config = await inspector.config_get("requirepass")
    if config.get("requirepass"):
        pytest.skip("this Redis requires a password; the case needs one that does not")
    redis = make_pipelined(with_password(db_url, "not-the-password"))

    with pytest.raises(ResponseError, match=r"(?i)auth|password"):
        await asyncio.wait_for(redis.execute("PING"), 3)
