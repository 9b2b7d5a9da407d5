"""Caching of permission resolution: a per-org authorization version, and the resolved
permissions of a (user, org) at a version.

The database is the source of truth. Any change that affects who may do what in an org bumps the
org's version in its row, in the same transaction as the change; after commit the caller reports
the new number with `AuthzVersions.bump`. Cached permissions are keyed by that version, so a bump
makes every older entry unreachable at once: nothing is ever invalidated explicitly.

To stay correct under races, cache permissions under the version read *in the same database
snapshot* as the permissions themselves (never under a version read elsewhere, which could be
newer than the snapshot)."""

from typing import Protocol
from uuid import UUID


class AuthzVersions(Protocol):
    """The current authorization version of each org, answered from the worker's memory."""

    async def current(self, org_id: UUID) -> int | None:
        """The version this worker knows, or None when the org was never seen or the store is
        unhealthy (it may have missed a bump): the caller must then read the database (and may
        `bump` the number it read, which seeds every worker at no risk)."""
        ...

    async def bump(self, org_id: UUID, version: int) -> None:
        """Record a version (after the database commit). Keeps the maximum, so late or repeated
        reports never move it back. Seen by this worker at once, by the others within ~100 ms.
        Raises `DependencyUnavailable` if it could not be shared (it is retried in the background)."""
        ...

    async def healthy(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class PermissionCache(Protocol):
    """Resolved permissions ("orders:create", ...) of a user in an org at an authz version.
    A miss (None) includes every failure of the cache: the caller then resolves from the
    database; a failure never reads as "allowed"."""

    async def get(self, user_id: UUID, org_id: UUID, version: int) -> frozenset[str] | None: ...

    async def put(self, user_id: UUID, org_id: UUID, version: int, permissions: frozenset[str]) -> None: ...
