"""Authorization versions held in the worker's memory.

`OrgVersions` is the in-memory model shared by both stores: the Redis store keeps one per worker,
fed by pub/sub. `InProcessAuthzVersions` is that table alone, for embedded mode (one worker)."""

from uuid import UUID


def check_version(version: int) -> int:
    # bool is an int subclass: refuse it, like negatives, rather than store a surprising number.
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError("an authorization version is a non-negative integer")
    return version


class OrgVersions:
    """org id -> highest version seen. Merges keep the maximum, so applying the same report
    twice, or out of order, gives the same table."""

    def __init__(self) -> None:
        self._versions: dict[UUID, int] = {}

    def get(self, org_id: UUID) -> int | None:
        return self._versions.get(org_id)

    def merge(self, org_id: UUID, version: int) -> int:
        """Record `version` unless a higher one is known; answer the version now held."""
        current = self._versions.get(org_id)
        if current is None or version > current:
            self._versions[org_id] = version
            return version
        return current

    def __len__(self) -> int:
        return len(self._versions)


class InProcessAuthzVersions:
    """`AuthzVersions` in memory, for a single worker."""

    def __init__(self) -> None:
        self.versions = OrgVersions()

    async def current(self, org_id: UUID) -> int | None:
        return self.versions.get(org_id)

    async def bump(self, org_id: UUID, version: int) -> None:
        self.versions.merge(org_id, check_version(version))

    async def healthy(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
