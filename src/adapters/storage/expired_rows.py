"""Deleting dead sessions and spent tokens in batches, each batch its own short transaction.

A batch picks its rows by an index (migration 0015: revoked_at, absolute_expires_at, expires_at)
and, on PostgreSQL, skips rows another transaction holds (FOR UPDATE SKIP LOCKED): a purge never
waits on a refresh or a login, and two workers purging at once take different rows. A session's
refresh tokens go with it (ON DELETE CASCADE), so a batch's size is its sessions plus their
tokens.

Spent tokens: one-time tokens and second-factor challenges (indexed by expiry, 0015), and the
short-lived single-use states of the broker OAuth, SSO and confirmed-deletion flows (small tables
once purged: a few minutes' worth of attempts)."""

from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.tables import (
    admin_deletion_tokens,
    broker_oauth_states,
    mfa_challenges,
    one_time_tokens,
    sessions,
    sso_states,
)

_S = sessions.c


class SqlExpiredRows:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    async def purge_dead_sessions(self, dead_before: datetime, batch_size: int) -> int:
        # Not idle expiry: every refresh updates idle_expires_at, and indexing it would end the
        # refreshes' HOT updates. A session idle-expired goes when its absolute lifetime ends.
        dead = (_S.revoked_at < dead_before) | (_S.absolute_expires_at < dead_before)
        return await self._delete(sessions, _S.id, select(_S.id).where(dead), batch_size)

    async def purge_spent_tokens(self, expired_before: datetime, batch_size: int) -> int:
        deleted = 0
        for table, key in (
            (one_time_tokens, one_time_tokens.c.token_hash),
            (mfa_challenges, mfa_challenges.c.token_hash),
            (broker_oauth_states, broker_oauth_states.c.state_hash),
            (sso_states, sso_states.c.state_hash),
            (admin_deletion_tokens, admin_deletion_tokens.c.token_hash),
        ):
            picked = select(key).where(table.c.expires_at < expired_before)
            deleted += await self._delete(table, key, picked, batch_size - deleted)
            if deleted >= batch_size:
                break
        return deleted

    async def _delete(self, table: Table, key: Any, picked: Any, batch_size: int) -> int:
        # Two statements, not DELETE ... WHERE key IN (SELECT ...): PostgreSQL plans that as a
        # hash join over the whole table, a full read per batch; a list of keys is a few index
        # lookups. Both run in one transaction, so the rows picked stay locked until deleted.
        picked = picked.limit(batch_size)
        if self._postgres:
            picked = picked.with_for_update(skip_locked=True)
        async with self._engine.begin() as conn:
            keys = list((await conn.execute(picked)).scalars())
            if not keys:
                return 0
            result = await conn.execute(delete(table).where(key.in_(keys)))
        return int(result.rowcount or 0)
