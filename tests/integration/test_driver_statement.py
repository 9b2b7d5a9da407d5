"""The refresh's statement sent through asyncpg itself (DriverStatement), alone on a raw pooled
connection: same answers as through SQLAlchemy, the connection always back in the pool, and a
connection that breaks under it (or is cancelled mid-statement) not handed out again."""

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
from adapters.storage.session_repository import refresh_alone
from adapters.storage.tables import refresh_tokens
from adapters.storage.unit_of_work import SqlUnitOfWork, SqlUnitOfWorkFactory
from application.errors import DependencyUnavailable
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


def _checked_out(engine: AsyncEngine) -> int:
    return engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]


async def _refresh(uow: SqlUnitOfWork, raw: str, successor: str = "next") -> RefreshAttempt | None:
    return await uow.sessions.refresh(token_digest(raw), token_digest(successor), NOW, IDLE)


async def _refresh_alone(engine: AsyncEngine, raw: str, successor: str = "next") -> RefreshAttempt | None:
    return await refresh_alone(engine, token_digest(raw), token_digest(successor), NOW, IDLE)


async def test_the_factory_refreshes_alone_on_postgresql_and_in_a_unit_on_sqlite(
    pg_engine: AsyncEngine, sqlite_engine: AsyncEngine
) -> None:
    for engine in (pg_engine, sqlite_engine):
        _, raw = await seed(engine)
        attempt = await SqlUnitOfWorkFactory(engine).refresh(
            token_digest(raw), token_digest("next"), NOW, IDLE
        )
        assert attempt is not None and attempt.rotated
        assert _checked_out(engine) == 0
        async with SqlUnitOfWork(engine) as uow:  # committed
            successor = await uow.sessions.get_refresh_token(token_digest("next"))
        assert successor is not None and successor.rotated_at is None


async def test_the_direct_refresh_gives_what_sqlalchemy_gives(pg_engine: AsyncEngine) -> None:
    session, raw = await seed(pg_engine)
    async with SqlUnitOfWork(pg_engine) as uow:
        through_sqlalchemy = await _refresh(uow, raw)
        # no commit: rolled back, so the direct refresh below starts from the same state
    direct = await _refresh_alone(pg_engine, raw)
    assert await _refresh_alone(pg_engine, "unknown") is None
    assert _checked_out(pg_engine) == 0
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
            attempt = await _refresh_alone(wide, raw, f"next-{n}")
            return attempt is not None and attempt.rotated

        results = await asyncio.gather(*(rotate(n) for n in range(8)))
        assert _checked_out(wide) == 0
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
    # Would fail if a unit with a transaction sent the rotation past SQLAlchemy (as
    # `refresh_alone` does): it would commit on its own, outside the transaction.
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
    # An outage, answered 503: the driver's own error (InterfaceError, InternalClientError, ...,
    # depending on when asyncpg notices) is its cause.
    with pytest.raises(DependencyUnavailable) as lost:
        await _refresh_alone(pg_engine, raw)  # on the pool's only connection
    assert isinstance(
        lost.value.__cause__,
        asyncpg.PostgresError | asyncpg.InterfaceError | asyncpg.InternalClientError | OSError,
    )
    assert _checked_out(pg_engine) == 0
    assert await _server_pid(pg_engine) != pid
    attempt = await _refresh_alone(pg_engine, raw)
    assert attempt is not None and attempt.rotated


async def test_a_connection_lost_mid_statement_is_not_handed_out_again(
    pg_engine: AsyncEngine, fresh_pg_url: str
) -> None:
    # asyncpg reports this one as a PostgresError (ConnectionDoesNotExistError): an outage.
    pid = await _server_pid(pg_engine)
    sleeping = DriverStatement(text("SELECT pg_sleep(30)"))

    task = asyncio.create_task(sleeping.fetchrow(pg_engine, {}))
    await asyncio.sleep(0.3)
    await _terminate(fresh_pg_url, pid)
    with pytest.raises(DependencyUnavailable) as lost:
        await task
    assert isinstance(lost.value.__cause__, asyncpg.PostgresError)
    assert _checked_out(pg_engine) == 0
    assert await _server_pid(pg_engine) != pid


async def test_a_statement_cancelled_midway_leaves_its_connection_behind(pg_engine: AsyncEngine) -> None:
    # A request timeout cancels the task mid-statement: the connection's state is in doubt.
    pid = await _server_pid(pg_engine)
    task = asyncio.create_task(DriverStatement(text("SELECT pg_sleep(30)")).fetchrow(pg_engine, {}))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _checked_out(pg_engine) == 0
    assert await _server_pid(pg_engine) != pid


async def test_a_statement_the_server_refuses_keeps_the_connection(pg_engine: AsyncEngine) -> None:
    pid = await _server_pid(pg_engine)
    with pytest.raises(asyncpg.DivisionByZeroError):
        await DriverStatement(text("SELECT 1 / 0")).fetchrow(pg_engine, {})
    assert _checked_out(pg_engine) == 0
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
    with pytest.raises(RuntimeError, match="asyncpg only"):
        await statement.fetchrow(sqlite_engine, {})
