"""One Redis connection per worker on which every caller pipelines: a command is written the
moment it is made and its reply matched in order (Redis answers a connection's commands in the
order they came), with no connection checkout, no per-call reader and no batching delay.

redis-py spends about 90 µs of CPU around each call (pool, retry wrapper, stream reader): more
than a bridge heartbeat's own work. Here a call is one `hiredis.pack_command`, one write and one
future; replies are parsed by hiredis' C reader. The URL is read with redis-py's own `parse_url`
(host, port, unix path, db, user, password, TLS). Used only for the hot bridge scripts; everything
else goes through redis-py.

A reply that does not come within `timeout` closes the connection (a late reply would otherwise
be matched to the wrong caller) and fails every call waiting on it; the next call reconnects. One
watchdog task checks the oldest call's deadline, so a call costs no timer of its own."""

import asyncio
import contextlib
import hashlib
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class _Replies(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.deadlines: deque[float] = deque()  # of the waiting calls, in the same order
        self.transport: asyncio.Transport | None = None
        self.outgoing: list[bytes] = []
        self.closed = False

    def send(self, packed: bytes) -> None:
        """Commands made in one turn of the event loop leave in one write (one syscall)."""
        if not self.outgoing:
            asyncio.get_running_loop().call_soon(self._flush)
        self.outgoing.append(packed)

    def _flush(self) -> None:
        outgoing, self.outgoing = self.outgoing, []
        if self.transport is not None and not self.closed:
            self.transport.write(b"".join(outgoing))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio's subclasses

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if not self.waiting:  # a reply nobody asked for: the stream cannot be trusted
                self.close(RedisConnectionError("Redis sent an unexpected reply"))
                return
            done = self.waiting.popleft()
            self.deadlines.popleft()
            if done.done():
                continue  # its caller gave up; the reply still had to be consumed in order
            if isinstance(reply, hiredis.ReplyError):
                message = str(reply)
                error = NoScriptError(message) if message.startswith("NOSCRIPT") else ResponseError(message)
                done.set_exception(error)
            else:
                done.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(RedisConnectionError(f"Redis closed the connection: {exc or 'EOF'}"))

    def close(self, error: Exception) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self.deadlines.clear()
        while self.waiting:
            done = self.waiting.popleft()
            if not done.done():
                done.set_exception(error)

    def overdue(self, now: float) -> bool:
        return bool(self.deadlines) and self.deadlines[0] < now


class PipelinedRedis:
    def __init__(self, url: str, *, timeout: float = 5.0, connect_timeout: float = 2.0) -> None:
        options = parse_url(url)
        self._path: str | None = options.get("path")
        self._host = str(options.get("host") or "localhost")
        self._port = int(options.get("port") or 6379)
        self._db = int(options.get("db") or 0)
        self._username: str | None = options.get("username")
        self._password: str | None = options.get("password")
        self._tls = options.get("connection_class") is SSLConnection
        assert self._path is None or options.get("connection_class") is UnixDomainSocketConnection
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._replies: _Replies | None = None
        self._connecting: asyncio.Lock | None = None
        self._watchdog: asyncio.Task[None] | None = None

    async def execute(self, *command: str | int | bytes) -> Any:
        replies = await self._connected()
        return await self._send(replies, command)

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        if self._replies is not None:
            self._replies.close(RedisConnectionError("closed"))
            self._replies = None

    async def _watch(self) -> None:
        """One timer for every call (not one per call): a reply overdue closes the connection."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(0.5, self._timeout / 4))
            replies = self._replies
            if replies is not None and not replies.closed and replies.overdue(loop.time()):
                replies.close(RedisTimeoutError("Redis did not answer in time"))

    async def _send(self, replies: _Replies, command: tuple[str | int | bytes, ...]) -> Any:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        replies.waiting.append(done)
        replies.deadlines.append(loop.time() + self._timeout)
        replies.send(hiredis.pack_command(command))  # type: ignore[arg-type]
        return await done

    async def _connected(self) -> _Replies:
        replies = self._replies
        if replies is not None and not replies.closed:
            return replies
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._replies is None or self._replies.closed:
                self._replies = await self._connect()
            if self._watchdog is None or self._watchdog.done():
                self._watchdog = asyncio.create_task(self._watch(), name="redis-pipelined-watchdog")
            return self._replies

    async def _connect(self) -> _Replies:
        loop = asyncio.get_running_loop()
        replies: _Replies | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                if self._path is not None:
                    _, replies = await loop.create_unix_connection(_Replies, self._path)
                else:
                    context = ssl.create_default_context() if self._tls else None
                    _, replies = await loop.create_connection(_Replies, self._host, self._port, ssl=context)
                if self._password is not None:
                    auth = (self._username, self._password) if self._username else (self._password,)
                    await self._send(replies, ("AUTH", *auth))
                if self._db:
                    await self._send(replies, ("SELECT", self._db))
                return replies
        except BaseException as error:
            if replies is not None:
                replies.close(RedisConnectionError("the handshake with Redis failed"))
            if isinstance(error, (OSError, TimeoutError)):
                raise RedisConnectionError(f"cannot reach Redis: {error}") from error
            raise


class PipelinedScript:
    """A Lua script run by its SHA on a `PipelinedRedis`; loaded again when Redis lost it."""

    def __init__(self, redis: PipelinedRedis, script: str) -> None:
        self._redis = redis
        self._script = script
        self._sha = hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()  # Redis names scripts so

    async def __call__(self, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        try:
            return await self._redis.execute("EVALSHA", self._sha, len(keys), *keys, *args)
        except NoScriptError:
            await self._redis.execute("SCRIPT", "LOAD", self._script)
            return await self._redis.execute("EVALSHA", self._sha, len(keys), *keys, *args)
