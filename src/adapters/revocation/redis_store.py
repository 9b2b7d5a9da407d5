"""Revocation state in Redis, mirrored into every worker's memory through pub/sub.

Redis holds the truth in three sorted sets (`{namespace}:rev:sessions|users|orgs`, member = id,
score = expiry / "not before" in microseconds) and every change is published on
`{namespace}:revocations` by the same Lua script that writes it, so a write and its message are
one atomic step. Each worker subscribes, and after every (re)subscription reloads the sets: a change
is then either in the reload or published after the subscription was live, never lost in between.
`is_revoked` reads memory only, so the check on every bearer request costs no round trip."""

import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from adapters.redis_mirror import RedisChannelMirror
from adapters.revocation.in_process import RevocationState, to_micros, wall_clock_micros
from application.errors import DependencyUnavailable

logger = logging.getLogger(__name__)

# KEYS[1]: sorted set. ARGV: member, score (µs), retention after the score (µs), channel, kind.
# ZADD GT keeps the latest instant. Entries whose score + retention has passed (by the server
# clock) are dropped, and the key expires with its last entry. '%.0f' keeps microsecond values
# exact (Lua's tostring would round them to 14 digits).
_WRITE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local retention = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.0f', now - retention))
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then
  local expire_ms = math.ceil((tonumber(last[2]) + retention) / 1000) + 1
  redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', expire_ms))
end
redis.call('PUBLISH', ARGV[4], ARGV[5] .. ' ' .. ARGV[1] .. ' ' .. ARGV[2])
return 1
"""

_KINDS = ("session", "user", "org")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisRevocationStore:
    """`RevocationStore` on Redis pub/sub. Call `start()` once per worker before serving and
    `stop()` at shutdown; the client belongs to the caller (give it a `socket_connect_timeout`)."""

    def __init__(
        self,
        client: aioredis.Redis,
        namespace: str,
        *,
        max_token_ttl_seconds: int = 900,
        reconnect_delay: float = 0.5,
        ping_interval: float = 5.0,
        startup_timeout: float = 5.0,
        clock: Callable[[], int] = wall_clock_micros,
        recently_revoked: Callable[[], Awaitable[Iterable[tuple[UUID, datetime]]]] | None = None,
    ) -> None:
        self._client = client
        # The database's word on sessions revoked lately, merged on every reload: a Redis that
        # restarted without persistence (or lost a write) cannot make a worker forget them.
        self._recently_revoked = recently_revoked
        self._state = RevocationState(max_token_ttl_seconds=max_token_ttl_seconds, clock=clock)
        self._keys = {kind: f"{namespace}:rev:{kind}s" for kind in _KINDS}
        self._channel = f"{namespace}:revocations"
        self._script = client.register_script(_WRITE_SCRIPT)
        # Writes Redis refused, re-sent from the subscriber loop until they land, so other
        # workers do not stay unaware of a revocation made during a Redis hiccup.
        self._pending: dict[tuple[str, UUID], tuple[int, int]] = {}
        self._mirror = RedisChannelMirror(
            client,
            self._channel,
            reload=self._reload,
            apply=self._apply,
            on_tick=self._tick,
            logger=logger,
            subject="revocation",
            stale_what="revocation checks",
            reconnect_delay=reconnect_delay,
            ping_interval=ping_interval,
            startup_timeout=startup_timeout,
            task_name=f"revocations:{self._channel}",
        )

    # -- writes: local memory first (this worker sees its change at once), then Redis + publish.

    async def revoke_session(self, session_id: UUID, expires_at: datetime) -> None:
        expires_us = to_micros(expires_at)
        self._state.add_session(session_id, expires_us)
        await self._write("session", session_id, expires_us, retention_us=0)

    async def set_user_not_before(self, user_id: UUID, instant: datetime) -> None:
        not_before_us = to_micros(instant)
        self._state.add_user(user_id, not_before_us)
        await self._write("user", user_id, not_before_us, self._state.not_before_retention_us)

    async def set_org_not_before(self, org_id: UUID, instant: datetime) -> None:
        not_before_us = to_micros(instant)
        self._state.add_org(org_id, not_before_us)
        await self._write("org", org_id, not_before_us, self._state.not_before_retention_us)

    async def _write(self, kind: str, member: UUID, score_us: int, retention_us: int) -> None:
        try:
            await self._send(kind, member, score_us, retention_us)
        except (RedisError, OSError) as error:
            previous = self._pending.get((kind, member))
            if previous is None or previous[0] < score_us:
                self._pending[(kind, member)] = (score_us, retention_us)
            self._log_degraded("a revocation could not be written (it will be re-sent)", error)
            raise DependencyUnavailable("The revocation store is unreachable.") from error

    async def _send(self, kind: str, member: UUID, score_us: int, retention_us: int) -> None:
        await self._script(
            keys=[self._keys[kind]],
            args=[str(member), score_us, retention_us, self._channel, kind],
        )

    async def _flush_pending(self) -> None:
        for (kind, member), (score_us, retention_us) in list(self._pending.items()):
            try:
                await self._send(kind, member, score_us, retention_us)
            except (RedisError, OSError):
                return  # still down: try again on the next tick
            if self._pending.get((kind, member)) == (score_us, retention_us):
                del self._pending[(kind, member)]

    # -- reads: memory only.

    async def is_revoked(self, session_id: UUID, user_id: UUID, org_id: UUID, issued_at: datetime) -> bool:
        return self._state.is_revoked(session_id, user_id, org_id, to_micros(issued_at))

    async def healthy(self) -> bool:
        """False while the subscriber is disconnected or its last reload failed: memory may then
        miss revocations made by other workers, so the caller should consult the database."""
        return self._mirror.healthy() and not self._pending

    # -- lifecycle: the subscriber lives in the mirror.

    async def start(self) -> None:
        """Start the subscriber and wait (up to `startup_timeout`) for its first attempt to
        connect and load the state. Never raises for an unreachable Redis: `healthy()` says so."""
        await self._mirror.start()

    async def stop(self) -> None:
        await self._mirror.stop()

    async def _tick(self) -> None:
        self._state.maybe_purge()
        if self._pending:
            await self._flush_pending()

    def _apply(self, data: str) -> None:
        try:
            kind, member, score = data.split(" ")
            self._add(kind, UUID(member), int(score))
        except ValueError:
            logger.warning("ignoring a malformed message on the revocation channel")

    def _add(self, kind: str, member: UUID, score_us: int) -> None:
        if kind == "session":
            self._state.add_session(member, score_us)
        elif kind == "user":
            self._state.add_user(member, score_us)
        elif kind == "org":
            self._state.add_org(member, score_us)
        else:
            raise ValueError(kind)

    async def _reload(self) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for kind in _KINDS:
                pipe.zrange(self._keys[kind], 0, -1, withscores=True)
            results = await pipe.execute()
        # Merge rather than replace: nothing is ever un-revoked, and a change this worker made
        # while the reload was in flight must not be dropped. Expired entries are purged below.
        for kind, entries in zip(_KINDS, results, strict=True):
            for member, score in entries:
                self._add(kind, UUID(_text(member)), int(score))
        if self._recently_revoked is not None:
            try:
                recent = await self._recently_revoked()
            except Exception as error:  # the database being down must not make Redis look down
                self._log_degraded("recent revocations could not be read from the database", error)
            else:
                for session_id, expires_at in recent:
                    self._state.add_session(session_id, to_micros(expires_at))
        self._state.purge()

    def _log_degraded(self, what: str, error: BaseException) -> None:
        self._mirror.log_degraded(what, error)
