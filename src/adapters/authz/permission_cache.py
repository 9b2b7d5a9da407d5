"""Resolved permissions of a (user, org) at an authz version: a per-worker LRU in memory in front
of Redis (`{namespace}:perm:{org}:{user}:{version}`, a JSON list with a TTL).

The version is part of every key, so a bump makes all older entries unreachable; they simply
age out of the LRU and expire in Redis. Any Redis failure is a miss (the caller resolves from the
database), never an answer; it is logged once per outage, and Redis is left alone for
`retry_after_seconds` so a dead server costs the hot path no connection attempts."""

import json
import logging
import time
from collections import OrderedDict
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

_Key = tuple[UUID, UUID, int]


class LruPermissions:
    """At most `max_entries` (user, org, version) -> permissions; the least recently used goes."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("the permission cache needs room for at least one entry")
        self._max_entries = max_entries
        self._entries: OrderedDict[_Key, frozenset[str]] = OrderedDict()

    def get(self, key: _Key) -> frozenset[str] | None:
        permissions = self._entries.get(key)
        if permissions is not None:
            self._entries.move_to_end(key)
        return permissions

    def put(self, key: _Key, permissions: frozenset[str]) -> None:
        self._entries[key] = permissions
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def _encode(permissions: frozenset[str]) -> str:
    return json.dumps(sorted(permissions), separators=(",", ":"))


def _decode(raw: bytes | str) -> frozenset[str] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return None
    return frozenset(value)


class LayeredPermissionCache:
    """`PermissionCache`: memory first (no network), then Redis (which then fills memory).
    With `redis_client=None` it is memory-only (embedded mode, one worker). The client belongs
    to the caller (give it a `socket_connect_timeout` and a `socket_timeout`)."""

    def __init__(
        self,
        redis_client: aioredis.Redis | None,
        namespace: str,
        *,
        local_max_entries: int = 100_000,
        redis_ttl_seconds: int = 3600,
        retry_after_seconds: float = 1.0,
    ) -> None:
        self._client = redis_client
        self._prefix = f"{namespace}:perm"
        self._local = LruPermissions(local_max_entries)
        self._ttl = redis_ttl_seconds
        self._retry_after = retry_after_seconds
        self._redis_paused_until = 0.0
        self._degraded_logged = False

    async def get(self, user_id: UUID, org_id: UUID, version: int) -> frozenset[str] | None:
        key = (user_id, org_id, version)
        permissions = self._local.get(key)
        if permissions is not None or not self._redis_usable():
            return permissions
        assert self._client is not None
        try:
            raw = await self._client.get(self._redis_key(key))
        except (RedisError, OSError) as error:
            self._degraded(error)
            return None
        self._recovered()
        if raw is None:
            return None
        permissions = _decode(raw)
        if permissions is None:
            logger.warning("ignoring a malformed permission cache entry")
            return None
        self._local.put(key, permissions)
        return permissions

    async def put(self, user_id: UUID, org_id: UUID, version: int, permissions: frozenset[str]) -> None:
        key = (user_id, org_id, version)
        permissions = frozenset(permissions)
        self._local.put(key, permissions)
        if not self._redis_usable():
            return
        assert self._client is not None
        try:
            await self._client.set(self._redis_key(key), _encode(permissions), ex=self._ttl)
        except (RedisError, OSError) as error:
            self._degraded(error)
            return
        self._recovered()

    def _redis_key(self, key: _Key) -> str:
        user_id, org_id, version = key
        return f"{self._prefix}:{org_id}:{user_id}:{version}"

    def _redis_usable(self) -> bool:
        return self._client is not None and time.monotonic() >= self._redis_paused_until

    def _degraded(self, error: BaseException) -> None:
        self._redis_paused_until = time.monotonic() + self._retry_after
        if self._degraded_logged:
            return
        self._degraded_logged = True
        # The error's class and text only (host/port); never ids or permissions.
        logger.warning(
            "the permission cache lost Redis (%s: %s); resolving from the database until it is back",
            error.__class__.__name__,
            error,
        )

    def _recovered(self) -> None:
        if self._degraded_logged:
            self._degraded_logged = False
            logger.info("the permission cache reached Redis again")
