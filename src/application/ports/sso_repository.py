"""Pending SSO sign-ins and the identities linked to accounts."""

from datetime import datetime
from typing import Protocol
from uuid import UUID

from domain.sso import IdentityKey, SsoIdentity, SsoState


class SsoRepository(Protocol):
    async def add_state(self, state: SsoState) -> None:
        """Stores a pending sign-in, dropping expired ones on the way (the table stays small)."""
        ...

    async def consume_state(self, state_hash: str, now: datetime) -> SsoState | None:
        """Atomically marks an unused state used and returns it; exactly one concurrent caller
        gets it, every later one None."""
        ...

    async def identity_by_key(self, key: IdentityKey) -> SsoIdentity | None: ...

    async def identities_of(self, user_id: UUID, *, lock: bool = False) -> list[SsoIdentity]:
        """`lock`: hold the rows until commit, so two unlinks of one account are decided one
        after the other (neither may leave it without a way in)."""
        ...

    async def add_identity(self, identity: SsoIdentity) -> None:
        """Raises application.errors.Conflict when the identity is linked already."""
        ...

    async def touch_identity(self, identity_id: UUID, now: datetime) -> None: ...

    async def remove_identity(self, user_id: UUID, identity_id: UUID) -> bool:
        """False when the user has no such identity."""
        ...
