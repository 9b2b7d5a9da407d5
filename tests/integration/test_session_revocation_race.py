"""A revocation committed while a refresh, re-authentication or org switch is in flight is never
written over: the storage refuses to touch a revoked session (both backends)."""

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.unit_of_work import SqlUnitOfWork
from domain.orgs import Membership, OrgRole
from domain.sessions import RefreshToken, Session, token_digest
from tests.integration.storage_seed import new_org, new_session, new_user

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


async def seed(engine: AsyncEngine) -> tuple[Session, str]:
    org = new_org(NOW)
    user = new_user(org, NOW)
    session = new_session(user, NOW)
    raw = uuid.uuid4().hex
    async with SqlUnitOfWork(engine) as uow:
        await uow.orgs.add(org)
        await uow.users.add(user)
        await uow.orgs.add_membership(Membership(org.id, user.id, OrgRole.ADMINISTRATOR, NOW))
        await uow.sessions.add(session)
        await uow.sessions.add_refresh_token(RefreshToken(token_digest(raw), session.id, NOW))
        await uow.commit()
    return session, raw


async def revoke(engine: AsyncEngine, session_id: uuid.UUID) -> None:
    async with SqlUnitOfWork(engine) as uow:
        assert await uow.sessions.revoke(session_id, NOW, "logout")
        await uow.commit()


async def test_a_refresh_after_a_revocation_claims_nothing(engine: AsyncEngine) -> None:
    session, raw = await seed(engine)
    await revoke(engine, session.id)  # committed before the refresh's statement begins
    async with SqlUnitOfWork(engine) as uow:
        attempt = await uow.sessions.refresh(token_digest(raw), token_digest("next"), NOW, timedelta(days=7))
        await uow.commit()
    assert attempt is not None and attempt.rotated is False
    assert attempt.context.session.revoked_at is not None
    async with SqlUnitOfWork(engine) as uow:
        stored = await uow.sessions.get(session.id)
        token = await uow.sessions.get_refresh_token(token_digest(raw))
    assert stored is not None and stored.revoked_at is not None
    assert token is not None and token.rotated_at is None
    async with SqlUnitOfWork(engine) as uow:
        assert await uow.sessions.get_refresh_token(token_digest("next")) is None  # no successor


async def test_amending_a_revoked_session_changes_nothing_and_says_so(engine: AsyncEngine) -> None:
    session, _ = await seed(engine)
    await revoke(engine, session.id)
    async with SqlUnitOfWork(engine) as uow:
        assert not await uow.sessions.amend(session.id, auth_time=NOW + timedelta(hours=1))
        assert not await uow.sessions.amend(session.id, last_used_at=NOW + timedelta(hours=1))
        await uow.commit()
    async with SqlUnitOfWork(engine) as uow:
        stored = await uow.sessions.get(session.id)
    assert stored is not None and stored.revoked_at is not None and stored.auth_time == NOW
