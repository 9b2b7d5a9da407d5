"""Storage of broker connections and pending authorisations (org-scoped rows)."""

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from domain.brokers import BrokerConnection, ConnectedAccount, CtraderScope, OAuthState, SealedCredential


@dataclass(frozen=True)
class SealedRow:
    """A row holding a sealed credential, as the vault's directory lists it (metadata only)."""

    table: str
    id: UUID
    org_id: UUID
    key_id: str
    access_expires_at: datetime | None


class BrokerConnectionRepository(Protocol):
    async def add(self, connection: BrokerConnection) -> None: ...

    async def get(self, org_id: UUID, connection_id: UUID) -> BrokerConnection | None: ...

    async def in_org(self, org_id: UUID) -> list[BrokerConnection]: ...

    async def replace_tokens(
        self,
        org_id: UUID,
        connection_id: UUID,
        sealed: SealedCredential,
        *,
        scope: CtraderScope,
        accounts: tuple[ConnectedAccount, ...],
        access_expires_at: datetime,
        now: datetime,
    ) -> bool:
        """Re-authorisation: new tokens, status active, generation bumped. False when gone."""
        ...

    async def claim_refresh(self, org_id: UUID, connection_id: UUID, generation: int, now: datetime) -> bool:
        """Marks a refresh in flight on this generation of an active connection; of concurrent
        callers exactly one gets True. The claim is committed before the broker is called."""
        ...

    async def finish_refresh(
        self,
        org_id: UUID,
        connection_id: UUID,
        generation: int,
        sealed: SealedCredential,
        access_expires_at: datetime,
        now: datetime,
    ) -> bool:
        """Stores the refreshed tokens and clears the claim, only on the claimed generation."""
        ...

    async def release_refresh(self, org_id: UUID, connection_id: UUID, generation: int) -> None:
        """Clears a claim whose request never reached the broker (the refresh token is unspent)."""
        ...

    async def mark_needs_reauth(self, org_id: UUID, connection_id: UUID, now: datetime) -> bool:
        """Active -> needs_reauth (drops any claim); False when it was not active."""
        ...

    async def rename(self, org_id: UUID, connection_id: UUID, label: str, now: datetime) -> bool: ...

    async def revoke(self, org_id: UUID, connection_id: UUID, now: datetime) -> bool:
        """Destroys the ciphertext, then marks the connection revoked; False when already revoked."""
        ...

    async def reseal(
        self, org_id: UUID, connection_id: UUID, generation: int, sealed: SealedCredential
    ) -> bool:
        """Rotation: the same tokens under another key, only on the generation read and while no
        refresh is in flight."""
        ...

    async def add_state(self, state: OAuthState) -> None: ...

    async def consume_state(self, state_hash: str, now: datetime) -> OAuthState | None:
        """Marks the state used and returns it; None when unknown or already used. Single use
        under concurrency: exactly one caller gets it."""
        ...

    async def sealed_directory(self) -> list[SealedRow]:
        """Every broker connection and integration secret holding a ciphertext, across orgs:
        ids, orgs, key versions and expiry only. The vault's way past row-level security."""
        ...

    async def org_of(self, table: str, row_id: UUID) -> UUID | None:
        """The org a sealed row belongs to (None when unknown), before row security is declared."""
        ...
