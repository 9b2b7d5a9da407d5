"""Checking a bridge key on the hot path: from the worker's memory once warm, never a database
round trip per request, and stale the moment the bridge or its org changes anywhere.

A cached entry holds the bridge as read together with its org's authorization version; it is
used only while this worker's mirrors (fed by Redis pub/sub) still report both versions it was
read at. Any change to the bridge bumps its version; disabling the org or removing a member bumps
the org's. An unknown version (a mirror that missed something) means: read the database."""

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from application.errors import Forbidden, NotAuthenticated
from application.ports.authz_cache import AuthzVersions
from application.ports.bridge_repository import BridgeStanding
from application.ports.clock import Clock
from application.ports.unit_of_work import UnitOfWorkFactory
from domain.bridges import BridgeStatus, parse_key

CACHE_SIZE = 100_000
# Ids no bridge has, remembered briefly: junk keys naming random ids (forward-auth and
# /authz/bridge take keys from anyone a gateway forwards) cost one lookup each, not one a call.
# Ids are random UUIDs, unknowable before their bridge exists, so nothing valid is ever refused.
UNKNOWN_SECONDS = 30.0
# A cached entry is read again after this long whatever the mirrors say: should a version bump
# never reach Redis (a failover that leaves writes failing while reads still work), a revoked or
# suspended key is refused within this bound instead of never. Costs one row read per bridge per
# worker per interval.
MAX_AGE_SECONDS = 300.0


class InvalidApiKey(NotAuthenticated):
    """The API key is not a valid bridge key."""

    code = "invalid_api_key"


def key_hash(secret_key: bytes, key: str) -> str:
    """A 256-bit random secret needs no slow hash; the server key keeps a stolen table useless."""
    return hmac.digest(secret_key, key.encode("ascii", "replace"), hashlib.sha256).hex()


@dataclass
class BridgeKeys:
    uow: UnitOfWorkFactory
    clock: Clock
    bridge_versions: AuthzVersions  # keyed by bridge id
    org_versions: AuthzVersions
    secret_key: bytes = field(repr=False)
    _cache: dict[UUID, BridgeStanding] = field(default_factory=dict)
    _read_until: dict[UUID, datetime] = field(default_factory=dict)  # when each entry is read again
    _unknown: dict[UUID, datetime] = field(default_factory=dict)  # until when an id is known absent

    async def authenticate(self, key: str) -> BridgeStanding:
        """The bridge a key belongs to, if the key is valid and the bridge may be used now."""
        bridge_id = parse_key(key)
        if bridge_id is None:
            raise InvalidApiKey()
        return self._checked(key, await self._standing(bridge_id))

    async def warm(self, key: str) -> BridgeStanding | None:
        """`authenticate` from this worker's memory alone: the standing when the key's bridge is
        cached, current and the key checks out; None otherwise (with no I/O either way)."""
        bridge_id = parse_key(key)
        cached = None if bridge_id is None else self._cache.get(bridge_id)
        if cached is None or not await self._current(cached):
            return None
        try:
            return self._checked(key, cached)
        except (NotAuthenticated, Forbidden):
            return None

    def _checked(self, key: str, standing: BridgeStanding | None) -> BridgeStanding:
        presented = key_hash(self.secret_key, key)
        if standing is None or not any(
            hmac.compare_digest(presented, known)
            for known in standing.bridge.accepted_hashes(self.clock.now())
        ):
            raise InvalidApiKey()
        bridge = standing.bridge
        if bridge.status is BridgeStatus.REVOKED:
            raise InvalidApiKey()
        if bridge.status is BridgeStatus.SUSPENDED:
            raise Forbidden("This bridge is suspended.", code="bridge_suspended")
        if standing.org_disabled:
            raise Forbidden("The bridge's organisation is disabled.", code="org_disabled")
        if not standing.owner_usable:
            raise Forbidden("The bridge's owner may no longer use it.", code="owner_unavailable")
        return standing

    async def _standing(self, bridge_id: UUID) -> BridgeStanding | None:
        cached = self._cache.get(bridge_id)
        if cached is not None and await self._current(cached):
            return cached
        now = self.clock.now()
        absent_until = self._unknown.get(bridge_id)
        if absent_until is not None and now < absent_until:
            return None
        async with self.uow() as uow:
            standing = await uow.bridges.standing(bridge_id)
        if standing is None:
            self._cache.pop(bridge_id, None)
            self._read_until.pop(bridge_id, None)
            if len(self._unknown) >= CACHE_SIZE:
                self._unknown.pop(next(iter(self._unknown)))
            self._unknown[bridge_id] = now + timedelta(seconds=UNKNOWN_SECONDS)
            return None
        # What was just read is the truth: seeding the mirrors with it is safe (they keep maxima).
        await self._seed(standing)
        if len(self._cache) >= CACHE_SIZE:
            self._read_until.pop(self._cache.pop(next(iter(self._cache))).bridge.id, None)
        self._cache[bridge_id] = standing
        self._read_until[bridge_id] = now + timedelta(seconds=MAX_AGE_SECONDS)
        return standing

    async def _current(self, cached: BridgeStanding) -> bool:
        until = self._read_until.get(cached.bridge.id)
        if until is None or self.clock.now() >= until:
            return False
        bridge_version = await self.bridge_versions.current(cached.bridge.id)
        org_version = await self.org_versions.current(cached.bridge.org_id)
        return bridge_version == cached.bridge.version and org_version == cached.org_version

    async def _seed(self, standing: BridgeStanding) -> None:
        try:
            await self.bridge_versions.bump(standing.bridge.id, standing.bridge.version)
            await self.org_versions.bump(standing.bridge.org_id, standing.org_version)
        except Exception:  # a mirror that cannot be seeded only means more database reads
            return

    def forget(self, bridge_id: UUID) -> None:
        self._cache.pop(bridge_id, None)
        self._read_until.pop(bridge_id, None)
        self._unknown.pop(bridge_id, None)

    async def changed(self, bridge_id: UUID, version: int) -> None:
        """After the commit that bumped a bridge's version: every worker's copy is stale now."""
        self.forget(bridge_id)
        try:
            await self.bridge_versions.bump(bridge_id, version)
        except Exception:
            # Retried in the background by the store; until then other workers may serve the old
            # entry: the store logs it. The database already holds the change.
            return
