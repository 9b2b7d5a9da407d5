"""An in-memory SsoRepository: pending sign-ins claimed once, and identities unique by
(provider, issuer, subject) like the SQL table's constraint. Rows live in the fake unit of work's
transaction journal, so they commit, roll back and lock like every other fake table."""

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from application.errors import Conflict
from domain.sso import IdentityKey, SsoIdentity, SsoState

if TYPE_CHECKING:
    from tests.unit.fakes import _Transaction

STATES = "sso_states"
USED = "sso_states.used_at"
IDENTITIES = "sso_identities"
IDENTITY_KEYS = "sso_identities.key"  # the unique constraint, as its own lockable "table"


class FakeSsoRepository:
    def __init__(self, tx: "_Transaction") -> None:
        self.tx = tx

    async def add_state(self, state: SsoState) -> None:
        self.tx.put(STATES, state.state_hash, state)

    async def consume_state(self, state_hash: str, now: datetime) -> SsoState | None:
        await self.tx.lock(USED, state_hash)
        state: SsoState | None = self.tx.get(STATES, state_hash)
        if state is None or self.tx.get(USED, state_hash) is not None:
            return None
        self.tx.put(USED, state_hash, now)
        return state

    async def identity_by_key(self, key: IdentityKey) -> SsoIdentity | None:
        identity_id = self.tx.get(IDENTITY_KEYS, (key.provider, key.issuer, key.subject))
        found: SsoIdentity | None = self.tx.get(IDENTITIES, identity_id) if identity_id else None
        return found

    async def identities_of(self, user_id: UUID, *, lock: bool = False) -> list[SsoIdentity]:
        if lock:
            await self.tx.lock(IDENTITIES, ("user", user_id))
        rows = [row for row in self.tx.rows(IDENTITIES) if row.user_id == user_id]
        return sorted(rows, key=lambda row: (row.linked_at, row.id))

    async def add_identity(self, identity: SsoIdentity) -> None:
        key = (identity.provider, identity.issuer, identity.subject)
        await self.tx.lock(IDENTITY_KEYS, key)
        if self.tx.get(IDENTITY_KEYS, key) is not None:
            raise Conflict("This identity is linked to an account already.", code="identity_in_use")
        self.tx.put(IDENTITIES, identity.id, identity)
        self.tx.put(IDENTITY_KEYS, key, identity.id)

    async def touch_identity(self, identity_id: UUID, now: datetime) -> None:
        found: SsoIdentity | None = self.tx.get(IDENTITIES, identity_id)
        if found is not None:
            self.tx.put(IDENTITIES, identity_id, replace(found, last_used_at=now))

    async def remove_identity(self, user_id: UUID, identity_id: UUID) -> bool:
        found: SsoIdentity | None = self.tx.get(IDENTITIES, identity_id)
        if found is None or found.user_id != user_id:
            return False
        self.tx.delete(IDENTITIES, identity_id)
        self.tx.delete(IDENTITY_KEYS, (found.provider, found.issuer, found.subject))
        return True
