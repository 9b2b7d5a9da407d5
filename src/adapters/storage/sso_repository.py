"""Pending SSO sign-ins and linked provider identities, in SQL (only the state's digest is kept)."""

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.storage.tables import sso_identities, sso_states
from application.errors import Conflict
from domain.sso import IdentityKey, SsoIdentity, SsoProvider, SsoPurpose, SsoState

_S = sso_states.c
_I = sso_identities.c


def _to_state(row: Any) -> SsoState:
    return SsoState(
        state_hash=row.state_hash,
        provider=SsoProvider(row.provider),
        purpose=SsoPurpose(row.purpose),
        nonce=row.nonce,
        code_verifier=row.code_verifier,
        browser_hash=row.browser_hash,
        return_to=row.return_to,
        created_at=row.created_at,
        expires_at=row.expires_at,
        user_id=row.user_id,
        session_id=row.session_id,
    )


def _to_identity(row: Any) -> SsoIdentity:
    return SsoIdentity(
        id=row.id,
        user_id=row.user_id,
        provider=SsoProvider(row.provider),
        issuer=row.issuer,
        subject=row.subject,
        email=row.email,
        linked_at=row.linked_at,
        last_used_at=row.last_used_at,
    )


class SqlSsoRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def add_state(self, state: SsoState) -> None:
        await self.connection.execute(delete(sso_states).where(_S.expires_at < state.created_at))
        await self.connection.execute(
            insert(sso_states).values(
                state_hash=state.state_hash,
                provider=str(state.provider),
                purpose=str(state.purpose),
                nonce=state.nonce,
                code_verifier=state.code_verifier,
                browser_hash=state.browser_hash,
                return_to=state.return_to,
                user_id=state.user_id,
                session_id=state.session_id,
                created_at=state.created_at,
                expires_at=state.expires_at,
            )
        )

    async def consume_state(self, state_hash: str, now: datetime) -> SsoState | None:
        claimed = await self.connection.execute(
            update(sso_states).where((_S.state_hash == state_hash) & _S.used_at.is_(None)).values(used_at=now)
        )
        if claimed.rowcount != 1:
            return None
        row = (await self.connection.execute(select(sso_states).where(_S.state_hash == state_hash))).one()
        return _to_state(row)

    async def identity_by_key(self, key: IdentityKey) -> SsoIdentity | None:
        row = (
            await self.connection.execute(
                select(sso_identities).where(
                    (_I.provider == str(key.provider))
                    & (_I.issuer == key.issuer)
                    & (_I.subject == key.subject)
                )
            )
        ).first()
        return _to_identity(row) if row else None

    async def identities_of(self, user_id: UUID, *, lock: bool = False) -> list[SsoIdentity]:
        query = select(sso_identities).where(_I.user_id == user_id).order_by(_I.linked_at, _I.id)
        if lock and self.connection.dialect.name == "postgresql":
            query = query.with_for_update()  # SQLite's BEGIN IMMEDIATE already serialises writers
        rows = await self.connection.execute(query)
        return [_to_identity(row) for row in rows]

    async def add_identity(self, identity: SsoIdentity) -> None:
        try:
            await self.connection.execute(
                insert(sso_identities).values(
                    id=identity.id,
                    user_id=identity.user_id,
                    provider=str(identity.provider),
                    issuer=identity.issuer,
                    subject=identity.subject,
                    email=identity.email,
                    linked_at=identity.linked_at,
                    last_used_at=identity.last_used_at,
                )
            )
        except IntegrityError:
            # The transaction is spoilt on PostgreSQL: the caller leaves without committing.
            raise Conflict("This identity is linked to an account already.", code="identity_in_use") from None

    async def touch_identity(self, identity_id: UUID, now: datetime) -> None:
        await self.connection.execute(
            update(sso_identities).where(_I.id == identity_id).values(last_used_at=now)
        )

    async def remove_identity(self, user_id: UUID, identity_id: UUID) -> bool:
        gone = await self.connection.execute(
            delete(sso_identities).where((_I.id == identity_id) & (_I.user_id == user_id))
        )
        return gone.rowcount == 1
