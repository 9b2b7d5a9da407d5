"""A hot statement sent to PostgreSQL through asyncpg itself, on a connection in autocommit mode.

SQLAlchemy's execution machinery (execution context, result wrapping, the greenlet hop) costs a
refresh more CPU than PostgreSQL spends running its statement. For the few statements on
the hottest paths, `DriverStatement` compiles the SQLAlchemy statement once, with SQLAlchemy's
own asyncpg dialect, and sends the resulting SQL through the connection's asyncpg connection:
the statement is still written once, in SQLAlchemy, and asyncpg prepares and caches it as it
would anyway.

Only for connections in autocommit mode: SQLAlchemy's asyncpg adapter begins its transactions
lazily, at its first statement, so a statement sent past it could run outside the transaction
it belongs to. The values come back as asyncpg returns them, which for the column types used
here (text, boolean, integer, uuid, timestamptz) is what SQLAlchemy returns on PostgreSQL too
(timestamps aware, in UTC; uuids as asyncpg's uuid.UUID subclass); a test compares the two."""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement


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

    async def fetchrow(self, connection: AsyncConnection, params: Mapping[str, Any]) -> asyncpg.Record | None:
        driver = await _driver_connection(connection)
        arguments = self.arguments(params)
        try:
            row: asyncpg.Record | None = await driver.fetchrow(self.sql, *arguments)
        except BaseException as failure:
            if _leaves_connection_in_doubt(failure, driver):
                await _invalidate(connection)
            raise
        return row

    async def fetchval(self, connection: AsyncConnection, params: Mapping[str, Any]) -> Any:
        row = await self.fetchrow(connection, params)
        return None if row is None else row[0]


async def _driver_connection(connection: AsyncConnection) -> asyncpg.Connection:
    if connection.dialect.driver != "asyncpg":
        raise RuntimeError("a DriverStatement runs on PostgreSQL through asyncpg only")
    pooled = await connection.get_raw_connection()
    return pooled.driver_connection


def _leaves_connection_in_doubt(failure: BaseException, driver: asyncpg.Connection) -> bool:
    """Only the server's refusal of the statement (a constraint, a type error) leaves the
    connection as it was. asyncpg files a lost connection under PostgresError too."""
    if isinstance(failure, asyncpg.PostgresConnectionError) or driver.is_closed():
        return True
    return not isinstance(failure, asyncpg.PostgresError)


async def _invalidate(connection: AsyncConnection) -> None:
    """A broken socket, a protocol state asyncpg gave up on, a cancellation mid-statement:
    SQLAlchemy, which would have dealt with it, never saw the failure, so the connection is
    dropped here, or the pool would hand it out again. (Unlike SQLAlchemy on a disconnect, this
    does not also expire the rest of the pool: after a failover each stale pooled connection
    fails one statement of its own before it is replaced.)"""
    if not connection.invalidated:
        await connection.invalidate()
