from datetime import datetime
from uuid import UUID

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.storage.tables import one_time_tokens
from domain.one_time_tokens import OneTimeToken, TokenPurpose


class SqlOneTimeTokenRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def add(self, token: OneTimeToken) -> None:
        await self.connection.execute(
            insert(one_time_tokens).values(
                token_hash=token.token_hash,
                user_id=token.user_id,
                purpose=str(token.purpose),
                created_at=token.created_at,
                expires_at=token.expires_at,
                used_at=token.used_at,
            )
        )

    async def get(self, token_hash: str) -> OneTimeToken | None:
        query = select(one_time_tokens).where(one_time_tokens.c.token_hash == token_hash)
        row = (await self.connection.execute(query)).first()
        if row is None:
            return None
        return OneTimeToken(
            token_hash=row.token_hash,
            user_id=row.user_id,
            purpose=TokenPurpose(row.purpose),
            created_at=row.created_at,
            expires_at=row.expires_at,
            used_at=row.used_at,
        )

    async def consume(self, token_hash: str, now: datetime) -> bool:
        result = await self.connection.execute(
            update(one_time_tokens)
            .where((one_time_tokens.c.token_hash == token_hash) & one_time_tokens.c.used_at.is_(None))
            .values(used_at=now)
        )
        return result.rowcount == 1

    async def invalidate_for_user(self, user_id: UUID, purpose: TokenPurpose, now: datetime) -> None:
        await self.connection.execute(
            update(one_time_tokens)
            .where(
                (one_time_tokens.c.user_id == user_id)
                & (one_time_tokens.c.purpose == str(purpose))
                & one_time_tokens.c.used_at.is_(None)
            )
            .values(used_at=now)
        )
