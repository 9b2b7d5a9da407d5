"""A session starts together with its first refresh token (one statement on PostgreSQL): both
rows or neither, on both backends."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.unit_of_work import SqlUnitOfWork
from domain.sessions import RefreshToken, Session, token_digest
from domain.users import User
from tests.integration.storage_seed import new_org, new_session, new_user

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


async def seed_user(engine: AsyncEngine) -> User:
    org = new_org(NOW)
    user = new_user(org, NOW)
    async with SqlUnitOfWork(engine) as uow:
        await uow.orgs.add(org)
        await uow.users.add(user)
        await uow.commit()
    return user


def a_session(user: User) -> Session:
    return new_session(user, NOW, ip="198.51.100.4", user_agent="test agent")


async def test_start_stores_the_session_and_its_first_token(engine: AsyncEngine) -> None:
    user = await seed_user(engine)
    session = a_session(user)
    token = RefreshToken(token_digest("first"), session.id, NOW + timedelta(seconds=1))
    async with SqlUnitOfWork(engine) as uow:
        await uow.sessions.start(session, token)
        await uow.commit()
    async with SqlUnitOfWork(engine) as uow:
        assert await uow.sessions.get(session.id) == session
        assert await uow.sessions.get_refresh_token(token.token_hash) == token


async def test_a_token_of_another_session_is_refused_and_nothing_is_stored(engine: AsyncEngine) -> None:
    user = await seed_user(engine)
    session = a_session(user)
    with pytest.raises(ValueError, match="another session"):
        async with SqlUnitOfWork(engine) as uow:
            await uow.sessions.start(session, RefreshToken(token_digest("x"), uuid.uuid4(), NOW))
    async with SqlUnitOfWork(engine) as uow:
        assert await uow.sessions.get(session.id) is None


async def test_a_refused_token_leaves_no_session_behind(engine: AsyncEngine) -> None:
    user = await seed_user(engine)
    first = a_session(user)
    async with SqlUnitOfWork(engine) as uow:
        await uow.sessions.start(first, RefreshToken(token_digest("taken"), first.id, NOW))
        await uow.commit()
    second = a_session(user)
    with pytest.raises(IntegrityError):
        async with SqlUnitOfWork(engine) as uow:
            await uow.sessions.start(second, RefreshToken(token_digest("taken"), second.id, NOW))
            await uow.commit()
    async with SqlUnitOfWork(engine) as uow:
        assert await uow.sessions.get(second.id) is None
        stored = await uow.sessions.get_refresh_token(token_digest("taken"))
    assert stored is not None and stored.session_id == first.id
