"""Storage of MT5 bridges (org-scoped rows)."""

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from domain.bridges import BoundAccount, Bridge, BridgeStatus


@dataclass(frozen=True)
class BridgeStanding:
    """A bridge with what decides whether its key may be used right now."""

    bridge: Bridge
    org_disabled: bool
    owner_usable: bool  # the creator exists, is not suspended, and is still a member
    org_version: int  # the org's authorization version, read with the rest


@dataclass(frozen=True)
class LastSeen:
    """A bridge call's mark on its row: when, from where, and a heartbeat's figures."""

    org_id: UUID
    bridge_id: UUID
    at: datetime
    ip: str
    heartbeat: dict[str, object] | None = None


class BridgeRepository(Protocol):
    async def add(self, bridge: Bridge) -> None: ...

    async def get(self, org_id: UUID, bridge_id: UUID) -> Bridge | None: ...

    async def in_org(self, org_id: UUID) -> list[Bridge]: ...

    async def standing(self, bridge_id: UUID) -> BridgeStanding | None:
        """By id alone (a bridge request names no org): the org is found first, then the bridge
        is read under row-level security like any org-scoped row."""
        ...

    async def rename(self, org_id: UUID, bridge_id: UUID, name: str, now: datetime) -> Bridge | None:
        """Bumps the version; None when unknown or revoked."""
        ...

    async def rotate_key(
        self, org_id: UUID, bridge_id: UUID, key_hash: str, prefix: str, previous_valid_until: datetime
    ) -> Bridge | None: ...

    async def set_status(
        self,
        org_id: UUID,
        bridge_id: UUID,
        status: BridgeStatus,
        now: datetime,
        only_from: tuple[BridgeStatus, ...] | None = None,
    ) -> Bridge | None:
        """Bumps the version; a revoked bridge stays revoked (None), and with `only_from` a
        bridge in any other status is left as it is (None)."""
        ...

    async def bind(
        self,
        org_id: UUID,
        bridge_id: UUID,
        account: BoundAccount,
        terminal_build: int,
        ea_version: str,
        now: datetime,
        ip: str,
    ) -> bool:
        """The first hello binds the key to an account: only while unbound (exactly one caller
        wins); the bridge goes online."""
        ...

    async def seen(
        self,
        org_id: UUID,
        bridge_id: UUID,
        now: datetime,
        ip: str,
        heartbeat: dict[str, object] | None = None,
    ) -> bool:
        """A heartbeat or hello from the bound account: last seen, last IP, online (and the
        heartbeat's figures). False when the bridge is no longer usable."""
        ...

    async def seen_many(self, marks: list[LastSeen]) -> int:
        """Many bridges' marks in one statement (across orgs: ids only, each row matched on its
        org too); a mark older than the row's, or for a bridge no longer usable, changes
        nothing. Answers how many rows changed."""
        ...

    async def forget_last_seen(self, org_id: UUID, bridge_id: UUID) -> None:
        """Erases the last address and figures (its owner closed their account)."""
        ...
