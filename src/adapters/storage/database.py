"""Engine creation and the connection-level settings each backend needs."""

from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from adapters.storage.outage import database_unavailable, is_outage


def _database_unavailable(context: ExceptionContext) -> None:
    """A database that is restarting or unreachable is an outage, not a bug: callers get
    `DependencyUnavailable` instead of a driver error. The pool still invalidates the broken
    connection (and every older one) as it would otherwise, so the next checkout opens a fresh
    connection once the server is back."""
    if context.is_disconnect or is_outage(context.original_exception):
        raise database_unavailable()


def _connect_or_unavailable(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
    """Opening a connection to a server that is down raises the socket's own error (refused,
    timed out), which `handle_error` never sees: the same outage, the same answer."""
    try:
        return dialect.connect(*cargs, **cparams)
    except Exception as error:
        if is_outage(error):
            raise database_unavailable() from error
        raise


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
            # Let SQLAlchemy emit BEGIN itself (the driver would begin lazily and too late).
            dbapi_connection.isolation_level = None

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Take the write lock at BEGIN so read-then-write transactions cannot deadlock
            # or interleave (SQLite's answer to SELECT ... FOR UPDATE).
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping round trip per checkout (the hot paths are a few statements each);
        # connections are recycled instead, and asyncpg drops broken ones on first use. A
        # disconnect found on one connection invalidates every older one in the pool at once.
        pool_pre_ping=False,
        pool_recycle=300,
        connect_args={"timeout": 5},
    )
    event.listen(engine.sync_engine, "handle_error", _database_unavailable)
    event.listen(engine.sync_engine, "do_connect", _connect_or_unavailable)
    return engine


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
