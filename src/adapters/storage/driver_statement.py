"""A hot statement sent to PostgreSQL through asyncpg itself, alone and committed by itself.

SQLAlchemy's execution machinery (execution context, result wrapping, the greenlet hops) costs a
refresh more CPU than PostgreSQL spends running its statement. For the few statements on
the hottest paths, `DriverStatement` compiles the SQLAlchemy statement once, with SQLAlchemy's
own asyncpg dialect, and sends the resulting SQL through the asyncpg connection of a raw pooled
connection: the statement is still written once, in SQLAlchemy, and asyncpg prepares and caches
it as it would anyway.

Only for a statement that is a unit of work by itself: it never runs inside a transaction (the
pool hands out connections outside any), so it cannot join one. The values come back as asyncpg
returns them, which for the column types used here (text, boolean, integer, uuid, timestamptz)
is what SQLAlchemy returns on PostgreSQL too (timestamps aware, in UTC; uuids as asyncpg's
uuid.UUID subclass); a test compares the two."""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.util import greenlet_spawn

from adapters.storage.outage import database_unavailable, is_outage


def _bound(value: Any) -> Any:
    # What UTCDateTime does on the way in: a naive datetime is refused rather than guessed at.
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetimes are not stored; use timezone-aware UTC")
        return value.astimezone(UTC)
    return value


class DriverStatement:
    def __init__(self, statement: ClauseElement) -> None:
        compiled = statement.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
        self.sql = str(compiled)
        # The bind names in `$n` order (SQLAlchemy's asyncpg dialect numbers its parameters).
        self.names: tuple[str, ...] = tuple(getattr(compiled, "positiontup", None) or ())

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        if params.keys() != set(self.names):
            raise ValueError(f"parameters {sorted(params)} do not match the statement's {sorted(self.names)}")
        return [_bound(params[name]) for name in self.names]

    async def fetchrow(self, engine: AsyncEngine, params: Mapping[str, Any]) -> asyncpg.Record | None:
        """The statement alone on a connection of the engine's pool, committed by itself. The
        pooled connection is taken raw, without a SQLAlchemy Connection around it (checking one
        out, switching it to autocommit and back, and returning it cost a refresh a tenth of its
        CPU in-process). A pooled connection is outside any transaction, so asyncpg runs the
        statement in autocommit mode. A connection the failure leaves in doubt is discarded:
        SQLAlchemy, which would have dealt with it, never saw the failure."""
        if engine.dialect.driver != "asyncpg":
            raise RuntimeError("a DriverStatement runs on PostgreSQL through asyncpg only")
        arguments = self.arguments(params)
        pooled = await engine.raw_connection()
        try:
            driver: asyncpg.Connection = pooled.driver_connection
            try:
                row: asyncpg.Record | None = await driver.fetchrow(self.sql, *arguments)
            except BaseException as failure:
                if is_outage(failure) or driver.is_closed():
                    # What SQLAlchemy does on a disconnect: this connection and every older one
                    # in the pool go, so after a restart the stale ones do not each fail one more
                    # request once the server is back.
                    await greenlet_spawn(engine.pool._invalidate, pooled, failure)
                    raise database_unavailable() from failure
                if _leaves_connection_in_doubt(failure, driver):
                    await greenlet_spawn(pooled.invalidate)
                raise
        finally:
            await greenlet_spawn(pooled.close)  # back to the pool (or discarded, if invalidated)
        return row


def _leaves_connection_in_doubt(failure: BaseException, driver: asyncpg.Connection) -> bool:
    """Only the server's refusal of the statement (a constraint, a type error) leaves the
    connection as it was. asyncpg files a lost connection under PostgresError too."""
    if isinstance(failure, asyncpg.PostgresConnectionError) or driver.is_closed():
        return True
    return not isinstance(failure, asyncpg.PostgresError)
