"""The refresh's statements sent through asyncpg itself (DriverStatement): same answers as through
SQLAlchemy, only on autocommit connections, and a connection that breaks under them is not
handed out again."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.database import create_engine
from adapters.storage.driver_statement import DriverStatement
from adapters.storage.tables import refresh_tokens
from adapters.storage.unit_of_work import SqlUnitOfWork
from application.ports.unit_of_work import RefreshAttempt
from domain.sessions import token_digest
from tests.integration.test_session_revocation_race import NOW, seed

IDLE = timedelta(days=7)


@pytest.fixture
async def pg_engine(fresh_pg_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(fresh_pg_url, pool_size=1)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def sqlite_engine(sqlite_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(sqlite_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_only_autocommit_units_on_postgresql_go_direct(
    pg_engine: AsyncEngine, sqlite_engine: AsyncEngine
) -> None:
    async with SqlUnitOfWork(pg_engine, autocommit=True) as uow:
        assert uow.sessions.direct is True
    async with SqlUnitOfWork(pg_engine) as uow:
        assert uow.sessions.direct is False
    async with SqlUnitOfWork(sqlite_engine, autocommit=True) as uow:  # SQLite's units hold a transaction
        assert uow.sessions.direct is False


async def _refresh(uow: SqlUnitOfWork, raw: str, successor: str = "next") -> RefreshAttempt | None:
    return await uow.sessions.refresh(token_digest(raw), token_digest(successor), NOW, IDLE)


async def test_the_direct_refresh_gives_what_sqlalchemy_gives(pg_engine: AsyncEngine) -> None:
    session, raw = await seed(pg_engine)
    async with SqlUnitOfWork(pg_engine) as uow:
        through_sqlalchemy = await _refresh(uow, raw)
        # no commit: rolled back, so the direct refresh below starts from the same state
    async with SqlUnitOfWork(pg_engine, autocommit=True) as uow:
        direct = await _refresh(uow, raw)
        assert await _refresh(uow, "unknown") is None
    assert direct is not None and through_sqlalchemy is not None
    assert direct == through_sqlalchemy
    assert direct.rotated is True and direct.context.has_second_factor is False
    assert direct.context.session.id == session.id
    context = direct.context
    for moment in (context.session.idle_expires_at, context.token.created_at, context.user.created_at):
        assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0)
    assert isinstance(context.user.id, uuid.UUID) and str(context.org.id) == str(
        through_sqlalchemy.context.org.id
    )


async def test_a_direct_rotation_has_exactly_one_winner(pg_engine: AsyncEngine, fresh_pg_url: str) -> None:
    session, raw = await seed(pg_engine)
    wide = create_engine(fresh_pg_url, pool_size=8)
    try:

        async def rotate(n: int) -> bool:
            async with SqlUnitOfWork(wide, autocommit=True) as uow:
                attempt = await _refresh(uow, raw, f"next-{n}")
                return attempt is not None and attempt.rotated

        results = await asyncio.gather(*(rotate(n) for n in range(8)))
    finally:
        await wide.dispose()
    assert results.count(True) == 1
    winner = results.index(True)
    async with SqlUnitOfWork(pg_engine) as uow:
        presented = await uow.sessions.get_refresh_token(token_digest(raw))
        successor = await uow.sessions.get_refresh_token(token_digest(f"next-{winner}"))
        stored = await uow.sessions.get(session.id)
    assert presented is not None and presented.successor_hash == token_digest(f"next-{winner}")
    assert successor is not None and successor.rotated_at is None
    assert stored is not None and stored.idle_expires_at == NOW + IDLE


async def test_a_rotation_in_a_rolled_back_unit_leaves_nothing(pg_engine: AsyncEngine) -> None:
    # Would fail if a unit with a transaction sent the rotation past SQLAlchemy: it would commit
    # on its own, outside the transaction.
    _, raw = await seed(pg_engine)
    async with SqlUnitOfWork(pg_engine) as uow:
        attempt = await _refresh(uow, raw)
        assert attempt is not None and attempt.rotated
        # no commit: rolled back on exit
    async with SqlUnitOfWork(pg_engine) as uow:
        token = await uow.sessions.get_refresh_token(token_digest(raw))
        assert await uow.sessions.get_refresh_token(token_digest("next")) is None
    assert token is not None and token.rotated_at is None


async def _server_pid(engine: AsyncEngine) -> int:
    async with SqlUnitOfWork(engine, autocommit=True) as uow:
        pid: int = (await uow.sessions.connection.get_raw_connection()).driver_connection.get_server_pid()
    return pid


async def _terminate(url: str, pid: int) -> None:
    admin = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


async def test_a_connection_broken_while_idle_is_not_handed_out_again(
    pg_engine: AsyncEngine, fresh_pg_url: str
) -> None:
    _, raw = await seed(pg_engine)
    pid = await _server_pid(pg_engine)
    await _terminate(fresh_pg_url, pid)
    # Which error depends on when asyncpg notices (InterfaceError, InternalClientError, ...).
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)):
        async with SqlUnitOfWork(pg_engine, autocommit=True) as uow:  # the pool's only connection
            await _refresh(uow, raw)
    assert await _server_pid(pg_engine) != pid
    async with SqlUnitOfWork(pg_engine, autocommit=True) as uow:
        attempt = await _refresh(uow, raw)
    assert attempt is not None and attempt.rotated


async def test_a_connection_lost_mid_statement_is_not_handed_out_again(
    pg_engine: AsyncEngine, fresh_pg_url: str
) -> None:
    # asyncpg reports this one as a PostgresError (ConnectionDoesNotExistError).
    pid = await _server_pid(pg_engine)
    sleeping = DriverStatement(text("SELECT pg_sleep(30)"))

    async def sleep() -> None:
        async with pg_engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await sleeping.fetchrow(connection, {})

    task = asyncio.create_task(sleep())
    await asyncio.sleep(0.3)
    await _terminate(fresh_pg_url, pid)
    with pytest.raises(asyncpg.PostgresError):
        await task
    assert await _server_pid(pg_engine) != pid


async def test_a_statement_the_server_refuses_keeps_the_connection(pg_engine: AsyncEngine) -> None:
    pid = await _server_pid(pg_engine)
    async with pg_engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        with pytest.raises(asyncpg.DivisionByZeroError):
            await DriverStatement(text("SELECT 1 / 0")).fetchrow(connection, {})
        assert not connection.invalidated
    assert await _server_pid(pg_engine) == pid


def test_parameters_must_match_the_statement_and_datetimes_be_aware() -> None:
    statement = DriverStatement(
        select(refresh_tokens.c.session_id)
        .where(refresh_tokens.c.created_at < NOW)
        .where(refresh_tokens.c.token_hash == "x")
    )
    assert statement.sql.count("$") == 2
    with pytest.raises(ValueError, match="do not match"):
        statement.arguments({})
    moment = datetime(2026, 1, 1, 12, tzinfo=UTC)
    names = statement.names
    arguments = statement.arguments(dict.fromkeys(names, moment))
    assert arguments == [moment, moment]
    with pytest.raises(ValueError, match="naive"):
        statement.arguments(dict.fromkeys(names, datetime(2026, 1, 1, 12)))


async def test_it_refuses_a_connection_that_is_not_asyncpg(sqlite_engine: AsyncEngine) -> None:
    statement = DriverStatement(select(refresh_tokens.c.session_id))
    async with sqlite_engine.connect() as connection:
        with pytest.raises(RuntimeError, match="asyncpg only"):
            await statement.fetchrow(connection, {})
