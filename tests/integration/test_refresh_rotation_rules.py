"""The storage rotates a refresh token exactly when `domain.refresh_rules.may_rotate` holds (both
backends; PostgreSQL applies the rule inside the one statement that reads and rotates). Anything
else leaves the token, its session and the successor table as they were: a rotation must never
extend a session the use case is about to refuse."""

import uuid
from dataclasses import dataclass, field, replace
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.unit_of_work import SqlUnitOfWork
from domain.mfa import TotpCredential
from domain.orgs import Membership, OrgRole, OrgStatus
from domain.refresh_rules import may_rotate
from domain.sessions import RefreshToken, token_digest
from domain.users import UserStatus
from tests.integration.storage_seed import new_org, new_session, new_user
from tests.integration.test_session_revocation_race import NOW

IDLE = timedelta(days=7)
SECOND = timedelta(seconds=1)


@dataclass(frozen=True)
class Case:
    rotates: bool
    user: dict[str, object] = field(default_factory=dict)
    org: dict[str, object] = field(default_factory=dict)
    session: dict[str, object] = field(default_factory=dict)
    totp: str | None = None  # "pending" or "confirmed"
    token_rotated: bool = False


CASES = {
    "live": Case(True),
    "idle limit reached": Case(False, session={"idle_expires_at": NOW}),
    "idle limit one second ahead": Case(True, session={"idle_expires_at": NOW + SECOND}),
    "absolute limit reached": Case(False, session={"absolute_expires_at": NOW}),
    "revoked": Case(False, session={"revoked_at": NOW - SECOND, "revoked_reason": "logout"}),
    "user suspended": Case(False, user={"status": UserStatus.SUSPENDED}),
    "org disabled": Case(False, org={"status": OrgStatus.DISABLED}),
    "org requires 2fa, none set up": Case(False, org={"require_2fa": True}),
    "org requires 2fa, only pending": Case(False, org={"require_2fa": True}, totp="pending"),
    "org requires 2fa, confirmed": Case(True, org={"require_2fa": True}, totp="confirmed"),
    "no requirement, confirmed": Case(True, totp="confirmed"),
    "token already rotated": Case(False, token_rotated=True),
}


async def _seed(engine: AsyncEngine, case: Case) -> tuple[uuid.UUID, str]:
    org = replace(new_org(NOW - IDLE), **case.org)  # type: ignore[arg-type]
    user = replace(new_user(org, NOW - IDLE), **case.user)  # type: ignore[arg-type]
    session = replace(new_session(user, NOW - IDLE), **case.session)  # type: ignore[arg-type]
    if "idle_expires_at" not in case.session:
        session.idle_expires_at = NOW + timedelta(days=1)
    raw = uuid.uuid4().hex
    rotated_at = NOW - SECOND if case.token_rotated else None
    async with SqlUnitOfWork(engine) as uow:
        await uow.orgs.add(org)
        await uow.users.add(user)
        await uow.orgs.add_membership(Membership(org.id, user.id, OrgRole.ADMINISTRATOR, NOW - IDLE))
        await uow.sessions.add(session)
        successor = token_digest("earlier") if case.token_rotated else None
        await uow.sessions.add_refresh_token(
            RefreshToken(token_digest(raw), session.id, NOW - IDLE, rotated_at, successor)
        )
        if case.totp is not None:
            await uow.mfa.put_pending_totp(TotpCredential(user.id, b"envelope", NOW - IDLE))
            if case.totp == "confirmed":
                assert await uow.mfa.confirm_totp(user.id, NOW - IDLE, 1)
        await uow.commit()
    return session.id, raw


@pytest.mark.parametrize("name", CASES)
async def test_the_storage_rotates_exactly_when_the_rule_allows(engine: AsyncEngine, name: str) -> None:
    case = CASES[name]
    session_id, raw = await _seed(engine, case)
    async with SqlUnitOfWork(engine) as uow:
        before = await uow.sessions.get(session_id)
        attempt = await uow.sessions.refresh(token_digest(raw), token_digest("next"), NOW, IDLE)
        await uow.commit()
    assert attempt is not None and before is not None
    context = attempt.context
    assert context.session == before  # the state before the refresh
    assert context.has_second_factor is (case.totp == "confirmed")
    allowed = context.token.rotated_at is None and may_rotate(
        context.session, context.user, context.org, context.has_second_factor, NOW
    )
    assert allowed is case.rotates
    assert attempt.rotated is case.rotates

    async with SqlUnitOfWork(engine) as uow:
        after = await uow.sessions.get(session_id)
        token = await uow.sessions.get_refresh_token(token_digest(raw))
        successor = await uow.sessions.get_refresh_token(token_digest("next"))
    assert after is not None and token is not None
    if case.rotates:
        assert token.rotated_at == NOW and token.successor_hash == token_digest("next")
        assert successor is not None and successor.session_id == session_id and successor.rotated_at is None
        assert after.last_used_at == NOW
        assert after.idle_expires_at == min(NOW + IDLE, before.absolute_expires_at)
    else:
        assert after == before  # not touched: an expired session stays expired
        assert successor is None
        assert token.rotated_at == (NOW - SECOND if case.token_rotated else None)


async def test_touching_never_extends_past_the_absolute_limit(engine: AsyncEngine) -> None:
    absolute = NOW + timedelta(days=2)  # nearer than the idle limit would reach
    session_id, raw = await _seed(engine, Case(True, session={"absolute_expires_at": absolute}))
    async with SqlUnitOfWork(engine) as uow:
        attempt = await uow.sessions.refresh(token_digest(raw), token_digest("next"), NOW, IDLE)
        await uow.commit()
    assert attempt is not None and attempt.rotated
    async with SqlUnitOfWork(engine) as uow:
        after = await uow.sessions.get(session_id)
    assert after is not None and after.idle_expires_at == absolute


async def test_an_unknown_token_reads_nothing_and_writes_nothing(engine: AsyncEngine) -> None:
    async with SqlUnitOfWork(engine) as uow:
        assert await uow.sessions.refresh(token_digest("unknown"), token_digest("next"), NOW, IDLE) is None
        await uow.commit()
    async with SqlUnitOfWork(engine) as uow:
        assert await uow.sessions.get_refresh_token(token_digest("next")) is None
