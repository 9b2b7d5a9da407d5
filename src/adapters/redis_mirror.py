"""A worker's in-memory copy of state kept in Redis, fed by a pub/sub channel.

The owner writes its state and publishes each change atomically (one Lua script); the mirror
subscribes, and after every (re)subscription calls `reload()`: a change is then either in the
reload or published after the subscription was live, never lost in between. Until that reload has
succeeded, `healthy()` is false so callers can fall back to the database."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.exceptions import RedisError


async def _nothing() -> None:
    return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisChannelMirror:
    """Runs the subscriber task. `reload` loads the whole state from Redis and must merge it into
    memory (never drop a change made locally meanwhile); `apply` takes one published message;
    `on_tick` runs after every message or ping interval (housekeeping). `subject` names the state in
    logs ("revocation"), `stale_what` what may go stale while Redis is away ("revocation checks")."""

    def __init__(
        self,
        client: aioredis.Redis,
        channel: str,
        *,
        reload: Callable[[], Awaitable[None]],
        apply: Callable[[str], None],
        logger: logging.Logger,
        subject: str,
        stale_what: str,
        on_tick: Callable[[], Awaitable[None]] = _nothing,
        reconnect_delay: float = 0.5,
        ping_interval: float = 5.0,
        startup_timeout: float = 5.0,
        task_name: str | None = None,
    ) -> None:
        self._client = client
        self._channel = channel
        self._reload = reload
        self._apply = apply
        self._on_tick = on_tick
        self._logger = logger
        self._subject = subject
        self._stale_what = stale_what
        self._reconnect_delay = reconnect_delay
        self._ping_interval = ping_interval
        self._startup_timeout = startup_timeout
        self._task_name = task_name or f"{subject}:{channel}"
        self._task: asyncio.Task[None] | None = None
        self._first_attempt = asyncio.Event()
        self._synced = False  # subscribed, and reloaded since the subscription became live
        self._degraded_logged = False

    def healthy(self) -> bool:
        """False while the subscriber is disconnected or its last reload failed: memory may then
        miss changes made by other workers."""
        return self._synced and self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the subscriber and wait (up to `startup_timeout`) for its first attempt to
        connect and load the state. Never raises for an unreachable Redis: `healthy()` says so."""
        if self._task is not None and not self._task.done():
            return
        self._first_attempt.clear()
        self._task = asyncio.create_task(self._run(), name=self._task_name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt.wait(), self._startup_timeout)

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._synced = False
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def log_degraded(self, what: str, error: BaseException) -> None:
        """Once per outage (until the next successful reload)."""
        if self._degraded_logged:
            return
        self._degraded_logged = True
        # The error's class and text only (host/port); never ids or tokens.
        self._logger.warning(
            "%s (%s: %s); %s may be stale until it is back",
            what,
            error.__class__.__name__,
            error,
            self._stale_what,
        )

    async def _run(self) -> None:
        while True:
            try:
                await self._subscribe_and_listen()
            except (RedisError, OSError) as error:
                self._synced = False
                self.log_degraded(f"the {self._subject} subscriber lost Redis", error)
            except Exception:
                # Unexpected (e.g. garbage in the state): keep the subscriber alive, retry later.
                self._synced = False
                self._logger.exception("the %s subscriber failed", self._subject)
            self._first_attempt.set()
            await asyncio.sleep(self._reconnect_delay)

    async def _subscribe_and_listen(self) -> None:
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(self._channel)
            connection = pubsub.connection
            if connection is not None:
                # redis-py reconnects and resubscribes on its own inside get_message: note it, so
                # healthy() is false until the reload that its subscribe confirmation triggers.
                connection.register_connect_callback(self._on_reconnect)
            last_seen = time.monotonic()
            pinged = False
            while True:
                message = await pubsub.get_message(timeout=self._ping_interval)
                now = time.monotonic()
                if message is not None:
                    last_seen, pinged = now, False
                    await self._handle(message)
                elif now - last_seen >= 3 * self._ping_interval:
                    raise aioredis.ConnectionError("no answer to pub/sub ping")
                elif not pinged:
                    # A silently dead connection would block forever: a ping must come back.
                    await pubsub.ping()
                    pinged = True
                await self._on_tick()
        finally:
            if pubsub.connection is not None:
                pubsub.connection.deregister_connect_callback(self._on_reconnect)
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py

    def _on_reconnect(self, connection: Connection) -> None:
        self._synced = False

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "subscribe":
            # The subscription is live from here on: whatever was written before is in Redis.
            await self._reload()
            self._synced = True
            self._first_attempt.set()
            if self._degraded_logged:
                self._degraded_logged = False
                self._logger.info(
                    "%s subscriber reconnected and reloaded the %s state", self._subject, self._subject
                )
        elif kind == "message":
            self._apply(_text(message["data"]))
