"""Platform administrators' account deletion tokens, in SQL (only their digests are stored)."""

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.storage.tables import admin_deletion_tokens
from domain.account_closure import DeletionToken

_T = admin_deletion_tokens.c


def _to_token(row: Any) -> DeletionToken:
    return DeletionToken(
        token_hash=row.token_hash,
        admin_id=row.admin_id,
        target_id=row.target_id,
        summary_digest=row.summary_digest,
        created_at=row.created_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
    )


class SqlDeletionTokenRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def add(self, token: DeletionToken) -> None:
        await self.connection.execute(
            insert(admin_deletion_tokens).values(
                token_hash=token.token_hash,
                admin_id=token.admin_id,
                target_id=token.target_id,
                summary_digest=token.summary_digest,
                created_at=token.created_at,
                expires_at=token.expires_at,
                used_at=token.used_at,
            )
        )

    async def get(self, token_hash: str) -> DeletionToken | None:
        row = (
            await self.connection.execute(select(admin_deletion_tokens).where(_T.token_hash == token_hash))
        ).first()
        return None if row is None else _to_token(row)

    async def consume(self, token_hash: str, now: datetime) -> bool:
        result = await self.connection.execute(
            update(admin_deletion_tokens)
            .where((_T.token_hash == token_hash) & _T.used_at.is_(None) & (_T.expires_at > now))
            .values(used_at=now)
        )
        return result.rowcount == 1
