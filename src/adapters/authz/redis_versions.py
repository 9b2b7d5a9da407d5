"""Authorization versions in Redis, mirrored into every worker's memory through pub/sub.

Redis holds one hash `{namespace}:authz:versions` (field = org id, value = highest version
reported) and every raise is published on `{namespace}:authz-versions` by the same Lua script that
writes it. Each worker mirrors the hash (see `RedisChannelMirror`: reload after every
(re)subscription, so nothing published while it was away is lost). `current` reads memory only,
so the version check on every bearer request costs no round trip."""

import logging
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from adapters.authz.in_process import OrgVersions, check_version
from adapters.redis_mirror import RedisChannelMirror
from application.errors import DependencyUnavailable

logger = logging.getLogger(__name__)

# KEYS[1]: the hash. ARGV: org id, version, channel. Only a raise is written and published, so
# a late or repeated report can never move a version back; answers the version now held.
_BUMP_SCRIPT = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
local version = tonumber(ARGV[2])
if held and tonumber(held) >= version then
  return held
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[1] .. ' ' .. ARGV[2])
return ARGV[2]
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisAuthzVersions:
    """`AuthzVersions` on Redis pub/sub. Call `start()` once per worker before serving and
    `stop()` at shutdown; the client belongs to the caller (give it a `socket_connect_timeout`)."""

    def __init__(
        self,
        client: aioredis.Redis,
        namespace: str,
        *,
        reconnect_delay: float = 0.5,
        ping_interval: float = 5.0,
        startup_timeout: float = 5.0,
    ) -> None:
        self._client = client
        self._versions = OrgVersions()
        # Reports Redis refused: re-sent from the subscriber loop until they land, because
        # until then the other workers keep serving the older version.
        self._pending: dict[UUID, int] = {}
        self._key = f"{namespace}:authz:versions"
        self._channel = f"{namespace}:authz-versions"
        self._script = client.register_script(_BUMP_SCRIPT)
        self._mirror = RedisChannelMirror(
            client,
            self._channel,
            reload=self._reload,
            apply=self._apply,
            on_tick=self._flush_pending,
            logger=logger,
            subject="authz version",
            stale_what="cached permissions",
            reconnect_delay=reconnect_delay,
            ping_interval=ping_interval,
            startup_timeout=startup_timeout,
            task_name=f"authz-versions:{self._channel}",
        )

    async def current(self, org_id: UUID) -> int | None:
        # Unhealthy: a bump from another worker may have been missed, so "don't know".
        if not self._mirror.healthy():
            return None
        return self._versions.get(org_id)

    async def bump(self, org_id: UUID, version: int) -> None:
        # Local memory first: this worker sees its own change at once, whatever Redis does.
        self._versions.merge(org_id, check_version(version))
        try:
            await self._write(org_id, version)
        except (RedisError, OSError) as error:
            self._pending[org_id] = max(version, self._pending.get(org_id, version))
            self._mirror.log_degraded("an authz version could not be written", error)
            raise DependencyUnavailable("The authorization version store is unreachable.") from error

    async def healthy(self) -> bool:
        """False while the subscriber is disconnected or its last reload failed."""
        return self._mirror.healthy()

    async def start(self) -> None:
        """Start the subscriber and wait (up to `startup_timeout`) for its first load. Never
        raises for an unreachable Redis: `healthy()` says so."""
        await self._mirror.start()

    async def stop(self) -> None:
        await self._mirror.stop()

    async def _write(self, org_id: UUID, version: int) -> None:
        held = await self._script(keys=[self._key], args=[str(org_id), version, self._channel])
        self._versions.merge(org_id, int(_text(held)))

    async def _flush_pending(self) -> None:
        for org_id, version in list(self._pending.items()):
            try:
                await self._write(org_id, version)
            except (RedisError, OSError) as error:
                self._mirror.log_degraded("an authz version could not be written", error)
                return
            if self._pending.get(org_id) == version:
                del self._pending[org_id]

    def _apply(self, data: str) -> None:
        try:
            org, version = data.split(" ")
            self._versions.merge(UUID(org), check_version(int(version)))
        except ValueError:
            logger.warning("ignoring a malformed message on the authz version channel")

    async def _reload(self) -> None:
        entries = await self._client.hgetall(self._key)
        # Merge rather than replace: versions never go back, and a bump this worker made while
        # the reload was in flight must not be dropped.
        for org, version in entries.items():
            try:
                self._versions.merge(UUID(_text(org)), check_version(int(_text(version))))
            except ValueError:
                logger.warning("ignoring a malformed entry in the authz version hash")
