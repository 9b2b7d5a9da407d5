"""The identity use cases (register, verify, login, refresh, logout, passwords, bearer) against
in-memory fakes of their ports: every rule here is the application's, not an adapter's."""

import asyncio
import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest

from application.errors import ApplicationError, Forbidden, InvalidInput, RateLimited
from application.identity import RequestContext
from application.ports.rate_limiter import RateLimit
from application.ports.token_issuer import InvalidToken
from application.use_cases.accounts import RegisterUser, ResendVerification, VerifyEmail
from application.use_cases.login import InvalidCredentials, Login, LoginResult
from application.use_cases.mfa_challenge import MfaRequired
from application.use_cases.passwords import ChangePassword, ForgotPassword, ResetPassword, WrongPassword
from application.use_cases.profile import GetProfile
from application.use_cases.refresh import InvalidRefreshToken, RefreshSession, RefreshTokenReused
from application.use_cases.sessions import ListSessions, Logout, RevokeOtherSessions, RevokeSession
from domain.mfa import TotpCredential
from domain.one_time_tokens import OneTimeToken, TokenPurpose
from domain.orgs import Membership, Organisation, OrgRole, OrgStatus
from domain.sessions import RefreshToken, Session, token_digest
from domain.users import User, UserStatus
from tests.unit.fakes import (
    CHALLENGES,
    MEMBERSHIPS,
    ONE_TIME_TOKENS,
    ORGS,
    REFRESH_TOKENS,
    SESSIONS,
    TOTP,
    USERS,
    Fakes,
    IntegrityViolation,
    LockWaitTimeout,
    live_sessions,
    login,
    make_deps,
    make_fakes,
    mutate,
    principal_of,
    seed_user,
)

CTX = RequestContext(ip="198.51.100.4", user_agent="pytest", request_id="req-1")
EMAIL = "erin@example.com"
PASSWORD = "a perfectly long passphrase"
NEW_PASSWORD = "another quite long passphrase"


@pytest.fixture
def fakes() -> Fakes:
    return make_fakes()


def token_from_link(body: str, path: str) -> str:
    link = next(word for word in body.split() if f"/{path}?" in word)
    return parse_qs(urlparse(link).query)["token"][0]


async def register(fakes: Fakes, email: str = EMAIL, password: str = PASSWORD) -> str:
    """Registers and returns the raw verification token from the mail."""
    await RegisterUser(fakes.deps)(email, password, "Erin", CTX)
    return token_from_link(fakes.mailer.outbox[-1].body, "verify-email")


# -- the fake unit of work behaves like the SQL one ----------------------------------------------


async def test_make_deps_wires_every_port() -> None:
    deps = make_deps(password_min_length=20)
    assert deps.policy.password_min_length == 20
    assert deps.refresh_successor_key and deps.recovery_code_key


async def test_uncommitted_writes_are_invisible_to_other_units_and_dropped_at_exit(fakes: Fakes) -> None:
    user = seed_user(fakes)
    async with fakes.deps.uow() as writer:
        changed = await writer.users.get(user.id)
        assert changed is not None
        changed.display_name = "Renamed"
        await writer.users.update(changed)
        assert (await writer.users.get(user.id)) == changed  # a unit reads its own writes
        async with fakes.deps.uow() as reader:
            seen = await reader.users.get(user.id)
            assert seen is not None and seen.display_name == "Dana"
    assert fakes.db.get(USERS, user.id).display_name == "Dana"


async def test_an_exception_inside_the_unit_discards_its_writes(fakes: Fakes) -> None:
    user = seed_user(fakes)
    with pytest.raises(RuntimeError):
        async with fakes.deps.uow() as uow:
            changed = await uow.users.get(user.id)
            assert changed is not None
            changed.status = UserStatus.SUSPENDED
            await uow.users.update(changed)
            raise RuntimeError("boom")
    assert fakes.db.get(USERS, user.id).status is UserStatus.ACTIVE


async def test_mutating_a_returned_row_changes_nothing_until_it_is_written(fakes: Fakes) -> None:
    user = seed_user(fakes)
    async with fakes.deps.uow() as uow:
        loaded = await uow.users.get(user.id)
        assert loaded is not None
        loaded.display_name = "Mallory"
        await uow.commit()
    assert fakes.db.get(USERS, user.id).display_name == "Dana"


async def test_a_conditional_write_gives_true_to_exactly_one_concurrent_unit(fakes: Fakes) -> None:
    user = seed_user(fakes)
    now = fakes.clock.now()
    fakes.db.put(
        ONE_TIME_TOKENS,
        "h",
        OneTimeToken("h", user.id, TokenPurpose.VERIFY_EMAIL, now, now + timedelta(hours=1)),
    )

    async def consume() -> bool:
        async with fakes.deps.uow() as uow:
            won = await uow.one_time_tokens.consume("h", now)
            await asyncio.sleep(0)  # let the other unit run while this one holds the row
            await uow.commit()
            return won

    assert sorted(await asyncio.gather(consume(), consume(), consume())) == [False, False, True]


async def test_a_rolled_back_claim_lets_the_next_unit_claim(fakes: Fakes) -> None:
    user = seed_user(fakes)
    now = fakes.clock.now()
    fakes.db.put(
        ONE_TIME_TOKENS,
        "h",
        OneTimeToken("h", user.id, TokenPurpose.VERIFY_EMAIL, now, now + timedelta(hours=1)),
    )
    async with fakes.deps.uow() as uow:
        assert await uow.one_time_tokens.consume("h", now)  # never committed
    async with fakes.deps.uow() as uow:
        assert await uow.one_time_tokens.consume("h", now)


async def test_a_nested_unit_writing_a_row_its_parent_holds_fails_as_a_deadlock(fakes: Fakes) -> None:
    user = seed_user(fakes)
    async with fakes.deps.uow() as outer:
        await outer.sessions.revoke_all_for_user(user.id, fakes.clock.now(), "x")
        await outer.audit.append(CTX.event("outer"))
        with pytest.raises(LockWaitTimeout):
            async with fakes.deps.uow() as inner:
                await inner.audit.append(CTX.event("inner"))


async def test_foreign_keys_are_enforced(fakes: Fakes) -> None:
    now = fakes.clock.now()
    async with fakes.deps.uow() as uow:
        with pytest.raises(IntegrityViolation):
            await uow.orgs.add_membership(Membership(uuid.uuid4(), uuid.uuid4(), OrgRole.MEMBER, now))


# -- registration and email verification ----------------------------------------------------------


async def test_register_creates_user_personal_org_admin_membership_and_hashed_verification_token(
    fakes: Fakes,
) -> None:
    raw = await register(fakes)

    user = fakes.db.user_by_email(EMAIL)
    assert user is not None and not user.is_verified
    assert PASSWORD not in user.password_hash
    assert user.password_hash == fakes.hasher.digest(PASSWORD, user.pepper_version)
    org = fakes.db.get(ORGS, user.default_org_id)
    assert org.personal and org.status is OrgStatus.ACTIVE
    membership = fakes.db.get(MEMBERSHIPS, (org.id, user.id))
    assert membership.role is OrgRole.ADMINISTRATOR
    tokens = fakes.db.rows(ONE_TIME_TOKENS)
    assert [t.token_hash for t in tokens] == [token_digest(raw)]  # stored only as its digest
    assert tokens[0].purpose is TokenPurpose.VERIFY_EMAIL and tokens[0].user_id == user.id
    assert tokens[0].expires_at == fakes.clock.now() + fakes.deps.policy.verify_email_ttl
    [mail] = fakes.mailer.outbox
    assert mail.to == EMAIL and mail.subject == "Verify your Bulwark email address"
    assert "https://app.bulwark.test/verify-email?token=" in mail.body
    assert fakes.db.audit_actions() == ["user.registered"]


async def test_register_normalises_the_address(fakes: Fakes) -> None:
    await RegisterUser(fakes.deps)("  Erin@Example.COM ", PASSWORD, "Erin", CTX)
    assert fakes.db.user_by_email(EMAIL) is not None


async def test_registering_an_existing_address_mails_the_owner_and_creates_nothing(fakes: Fakes) -> None:
    existing = seed_user(fakes, EMAIL)
    before = {table: fakes.db.rows(table) for table in (USERS, ORGS, MEMBERSHIPS, ONE_TIME_TOKENS)}

    await RegisterUser(fakes.deps)(EMAIL.upper(), "some other long passphrase", "Eve", CTX)

    assert {table: fakes.db.rows(table) for table in before} == before
    [mail] = fakes.mailer.outbox
    assert mail.to == EMAIL and mail.subject == "Someone tried to register with your address"
    assert "verify-email" not in mail.body
    [event] = fakes.db.audit_events("user.register_existing")
    assert event.target_id == str(existing.id)
    # Same hashing work as a real registration, so timing does not tell the two apart.
    assert [what for what, _ in fakes.hasher.calls] == ["hash"]


async def test_concurrent_registrations_of_one_address_create_one_account_and_no_orphan_org(
    fakes: Fakes,
) -> None:
    register_user = RegisterUser(fakes.deps)
    await asyncio.gather(
        register_user(EMAIL, PASSWORD, "Erin", CTX), register_user(EMAIL, NEW_PASSWORD, "Eve", CTX)
    )
    [user] = fakes.db.rows(USERS)
    [org] = fakes.db.rows(ORGS)  # the loser's personal organisation must not survive
    assert org.id == user.default_org_id
    assert sorted(m.subject for m in fakes.mailer.outbox) == [
        "Someone tried to register with your address",
        "Verify your Bulwark email address",
    ]
    [event] = fakes.db.audit_events("user.register_existing")
    assert event.target_id == str(user.id)


@pytest.mark.parametrize(
    "password",
    ["too short", "erin-is-my-name-forever", "correct horse battery staple"],
    ids=["short", "contains-email", "common"],
)
async def test_weak_password_is_refused_with_weak_password_and_nothing_stored(
    fakes: Fakes, password: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await RegisterUser(fakes.deps)(EMAIL, password, "Erin", CTX)
    assert refused.value.code == "weak_password" and refused.value.field == "password"
    assert fakes.db.rows(USERS) == [] and fakes.db.rows(ORGS) == []
    assert fakes.mailer.outbox == [] and fakes.hasher.calls == []


async def test_invalid_address_is_refused_before_hashing(fakes: Fakes) -> None:
    with pytest.raises(InvalidInput) as refused:
        await RegisterUser(fakes.deps)("not-an-address", PASSWORD, "Erin", CTX)
    assert refused.value.code == "invalid_email"
    assert fakes.hasher.calls == []


async def test_a_failing_mailer_does_not_change_the_answer(fakes: Fakes) -> None:
    fakes.mailer.fail = True
    await RegisterUser(fakes.deps)(EMAIL, PASSWORD, "Erin", CTX)
    assert fakes.db.user_by_email(EMAIL) is not None


async def test_verification_link_works_once(fakes: Fakes) -> None:
    raw = await register(fakes)
    await VerifyEmail(fakes.deps)(raw, CTX)
    assert fakes.db.user_by_email(EMAIL).is_verified

    with pytest.raises(InvalidInput) as reused:
        await VerifyEmail(fakes.deps)(raw, CTX)
    assert reused.value.code == "invalid_or_expired_token"


async def test_verification_link_expires(fakes: Fakes) -> None:
    raw = await register(fakes)
    fakes.clock.advance(fakes.deps.policy.verify_email_ttl)
    with pytest.raises(InvalidInput) as expired:
        await VerifyEmail(fakes.deps)(raw, CTX)
    assert expired.value.code == "invalid_or_expired_token"
    assert not fakes.db.user_by_email(EMAIL).is_verified


async def test_a_password_reset_link_does_not_verify_the_email(fakes: Fakes) -> None:
    seed_user(fakes, EMAIL, PASSWORD, verified=False)
    await ForgotPassword(fakes.deps)(EMAIL, CTX)
    raw = token_from_link(fakes.mailer.outbox[-1].body, "reset-password")
    with pytest.raises(InvalidInput):
        await VerifyEmail(fakes.deps)(raw, CTX)


async def test_resending_verification_retires_the_earlier_link(fakes: Fakes) -> None:
    first = await register(fakes)
    await ResendVerification(fakes.deps)(EMAIL, CTX)
    second = token_from_link(fakes.mailer.outbox[-1].body, "verify-email")
    assert second != first
    with pytest.raises(InvalidInput):
        await VerifyEmail(fakes.deps)(first, CTX)
    await VerifyEmail(fakes.deps)(second, CTX)
    assert fakes.db.user_by_email(EMAIL).is_verified


async def test_resend_for_an_unknown_address_answers_the_same_and_mails_nobody(fakes: Fakes) -> None:
    await ResendVerification(fakes.deps)("nobody@example.com", CTX)
    assert fakes.mailer.outbox == []


# -- login ----------------------------------------------------------------------------------------


async def test_login_creates_a_session_with_a_hashed_refresh_token_and_an_access_token(
    fakes: Fakes,
) -> None:
    user = seed_user(fakes, EMAIL, PASSWORD)
    result = await login(fakes, EMAIL, PASSWORD)

    [session] = fakes.db.rows(SESSIONS)
    assert session.id == result.session.id and session.user_id == user.id
    assert session.org_id == user.default_org_id and session.is_live(fakes.clock.now())
    [refresh] = fakes.db.rows(REFRESH_TOKENS)
    assert refresh.token_hash == token_digest(result.refresh_token) != result.refresh_token
    principal = await principal_of(fakes, result.access.token)
    assert (principal.user_id, principal.session_id) == (user.id, session.id)
    assert fakes.db.audit_actions() == ["login.success"]


async def test_unknown_email_burns_a_hash_and_fails_exactly_like_a_wrong_password(fakes: Fakes) -> None:
    seed_user(fakes, EMAIL, PASSWORD)

    with pytest.raises(ApplicationError) as unknown:
        await Login(fakes.deps)("nobody@example.com", "guess one two three", CTX)
    with pytest.raises(ApplicationError) as wrong:
        await Login(fakes.deps)(EMAIL, "guess one two three", CTX)

    for error in (unknown.value, wrong.value):
        assert type(error) is InvalidCredentials and error.code == "invalid_credentials"
    assert str(unknown.value) == str(wrong.value) and unknown.value.detail == wrong.value.detail
    assert fakes.hasher.calls == [("burn", "guess one two three"), ("verify", "guess one two three")]
    reasons = [e.details["reason"] for e in fakes.db.audit_events("login.failure")]
    assert reasons == ["unknown_email", "wrong_password"]
    assert fakes.db.rows(SESSIONS) == []


async def test_refused_rate_limit_stops_login_before_any_hashing(fakes: Fakes) -> None:
    seed_user(fakes, EMAIL, PASSWORD)
    fakes.limiter.refuse("login-account")
    with pytest.raises(RateLimited) as limited:
        await Login(fakes.deps)(EMAIL, PASSWORD, CTX)
    assert limited.value.retry_after > 0
    assert fakes.hasher.calls == []
    assert fakes.db.rows(SESSIONS) == []
    [event] = fakes.db.audit_events("rate_limit.tripped")
    assert event.details["limits"] == ["login-account", "login-account"]  # both tiers counted


async def test_login_counts_every_limit_tier_before_hashing(fakes: Fakes) -> None:
    seed_user(fakes, EMAIL, PASSWORD)
    assert isinstance(await Login(fakes.deps)(EMAIL, PASSWORD, CTX), LoginResult)
    first_hash = next(i for i, entry in enumerate(fakes.trace) if entry.startswith("hasher."))
    hits = [entry for entry in fakes.trace[:first_hash] if entry.startswith("limiter.hit:")]
    assert hits == [
        f"limiter.hit:login-ip:300:{CTX.ip}",
        f"limiter.hit:login-account:60:{EMAIL}",
        f"limiter.hit:login-account:3600:{EMAIL}",
    ]


async def test_account_limit_refuses_the_sixth_attempt_even_with_the_right_password(
    fakes: Fakes,
) -> None:
    seed_user(fakes, EMAIL, PASSWORD)
    for _ in range(5):
        with pytest.raises(InvalidCredentials):
            await Login(fakes.deps)(EMAIL, "wrong but long enough", CTX)
    with pytest.raises(RateLimited):
        await Login(fakes.deps)(EMAIL, PASSWORD, CTX)
    assert len(fakes.hasher.calls) == 5
    fakes.clock.advance(seconds=60)
    assert isinstance(await Login(fakes.deps)(EMAIL, PASSWORD, CTX), LoginResult)


async def test_unverified_account_is_told_only_after_a_correct_password(fakes: Fakes) -> None:
    seed_user(fakes, EMAIL, PASSWORD, verified=False)
    with pytest.raises(InvalidCredentials):
        await Login(fakes.deps)(EMAIL, "wrong but long enough", CTX)
    with pytest.raises(Forbidden) as refused:
        await Login(fakes.deps)(EMAIL, PASSWORD, CTX)
    assert refused.value.code == "email_not_verified"
    assert fakes.db.rows(SESSIONS) == []


async def test_suspended_account_is_refused_after_a_correct_password(fakes: Fakes) -> None:
    user = seed_user(fakes, EMAIL, PASSWORD)
    mutate(fakes, USERS, user.id, lambda u: setattr(u, "status", UserStatus.SUSPENDED))
    with pytest.raises(InvalidCredentials):
        await Login(fakes.deps)(EMAIL, "wrong but long enough", CTX)
    with pytest.raises(Forbidden) as refused:
        await Login(fakes.deps)(EMAIL, PASSWORD, CTX)
    assert refused.value.code == "account_suspended"
    assert fakes.db.rows(SESSIONS) == []


async def test_login_with_every_org_disabled_is_refused(fakes: Fakes) -> None:
    user = seed_user(fakes, EMAIL, PASSWORD)
    mutate(fakes, ORGS, user.default_org_id, lambda o: setattr(o, "status", OrgStatus.DISABLED))
    with pytest.raises(Forbidden) as refused:
        await Login(fakes.deps)(EMAIL, PASSWORD, CTX)
    assert refused.value.code == "org_disabled"


async def test_login_falls_back_to_another_active_org(fakes: Fakes) -> None:
    user = seed_user(fakes, EMAIL, PASSWORD)
    now = fakes.clock.now()
    team = Organisation(uuid.uuid4(), "Team", now)
    fakes.db.put(ORGS, team.id, team)
    fakes.db.put(MEMBERSHIPS, (team.id, user.id), Membership(team.id, user.id, OrgRole.MEMBER, now))
    mutate(fakes, ORGS, user.default_org_id, lambda o: setattr(o, "status", OrgStatus.DISABLED))
    result = await login(fakes, EMAIL, PASSWORD)
    assert result.session.org_id == team.id


async def test_needs_rehash_upgrades_the_stored_hash(fakes: Fakes) -> None:
    user = seed_user(fakes, EMAIL, PASSWORD)
    assert user.pepper_version == "p1"
    fakes.hasher.pepper_version = "p2"  # the pepper was rotated
    await login(fakes, EMAIL, PASSWORD)
    stored = fakes.db.get(USERS, user.id)
    assert stored.pepper_version == "p2"
    assert stored.password_hash == fakes.hasher.digest(PASSWORD, "p2")
    fakes.clock.advance(seconds=61)
    await login(fakes, EMAIL, PASSWORD)  # and the upgraded hash verifies


async def test_two_factor_users_get_a_challenge_and_no_session(fakes: Fakes) -> None:
    user = seed_user(fakes, EMAIL, PASSWORD)
    now = fakes.clock.now()
    fakes.db.put(TOTP, user.id, TotpCredential(user.id, b"sealed", now, confirmed_at=now, last_step=1))

    result = await Login(fakes.deps)(EMAIL, PASSWORD, CTX)

    assert isinstance(result, MfaRequired)
    assert fakes.db.rows(SESSIONS) == [] and fakes.db.rows(REFRESH_TOKENS) == []
    assert fakes.tokens.issued == {}
    [challenge] = fakes.db.rows(CHALLENGES)
    assert challenge.token_hash == token_digest(result.mfa_token) and challenge.user_id == user.id
    assert "login.success" not in fakes.db.audit_actions()
    with pytest.raises(InvalidToken):
        await principal_of(fakes, result.mfa_token)  # not a bearer token


async def test_a_pending_unconfirmed_totp_does_not_demand_a_second_factor(fakes: Fakes) -> None:
    user = seed_user(fakes, EMAIL, PASSWORD)
    fakes.db.put(TOTP, user.id, TotpCredential(user.id, b"sealed", fakes.clock.now()))
    assert isinstance(await Login(fakes.deps)(EMAIL, PASSWORD, CTX), LoginResult)


# -- refresh --------------------------------------------------------------------------------------


async def logged_in(fakes: Fakes) -> tuple[User, LoginResult]:
    user = seed_user(fakes, EMAIL, PASSWORD)
    return user, await login(fakes, EMAIL, PASSWORD)


async def test_refresh_rotates_to_a_new_token_and_extends_the_session(fakes: Fakes) -> None:
    _, first = await logged_in(fakes)
    fakes.clock.advance(hours=1)
    refreshed = await RefreshSession(fakes.deps)(first.refresh_token, CTX)

    assert refreshed.refresh_token != first.refresh_token
    old = fakes.db.get(REFRESH_TOKENS, token_digest(first.refresh_token))
    assert old.rotated_at == fakes.clock.now()
    assert old.successor_hash == token_digest(refreshed.refresh_token)
    session = fakes.db.get(SESSIONS, first.session.id)
    assert session.idle_expires_at == fakes.clock.now() + fakes.deps.policy.session_idle
    assert (await principal_of(fakes, refreshed.access.token)).session_id == first.session.id
    fakes.clock.advance(minutes=1)
    again = await RefreshSession(fakes.deps)(refreshed.refresh_token, CTX)
    assert again.refresh_token not in (first.refresh_token, refreshed.refresh_token)


async def test_old_refresh_token_after_the_grace_period_revokes_the_session(fakes: Fakes) -> None:
    _, first = await logged_in(fakes)
    refreshed = await RefreshSession(fakes.deps)(first.refresh_token, CTX)
    fakes.clock.advance(fakes.deps.policy.refresh_grace + timedelta(seconds=1))

    with pytest.raises(RefreshTokenReused):
        await RefreshSession(fakes.deps)(first.refresh_token, CTX)

    session = fakes.db.get(SESSIONS, first.session.id)
    assert session.revoked_reason == "refresh_reuse"
    [event] = fakes.db.audit_events("session.refresh_reuse")
    assert event.target_id == str(first.session.id)
    assert first.session.id in fakes.revocations.sessions
    with pytest.raises(InvalidRefreshToken):  # the thief's (or victim's) successor dies too
        await RefreshSession(fakes.deps)(refreshed.refresh_token, CTX)
    with pytest.raises(InvalidToken):
        await principal_of(fakes, refreshed.access.token)


async def test_old_refresh_token_within_grace_returns_the_same_successor(fakes: Fakes) -> None:
    _, first = await logged_in(fakes)
    refreshed = await RefreshSession(fakes.deps)(first.refresh_token, CTX)
    fakes.clock.advance(fakes.deps.policy.refresh_grace - timedelta(seconds=1))

    again = await RefreshSession(fakes.deps)(first.refresh_token, CTX)

    assert again.refresh_token == refreshed.refresh_token
    assert fakes.db.get(SESSIONS, first.session.id).revoked_at is None
    assert "session.refresh_reuse" not in fakes.db.audit_actions()


async def test_within_grace_but_after_the_successor_was_rotated_counts_as_reuse(fakes: Fakes) -> None:
    _, first = await logged_in(fakes)
    second = await RefreshSession(fakes.deps)(first.refresh_token, CTX)
    await RefreshSession(fakes.deps)(second.refresh_token, CTX)
    with pytest.raises(RefreshTokenReused):
        await RefreshSession(fakes.deps)(first.refresh_token, CTX)
    assert fakes.db.get(SESSIONS, first.session.id).revoked_reason == "refresh_reuse"


async def test_concurrent_refreshes_of_one_token_both_get_the_same_successor(fakes: Fakes) -> None:
    _, first = await logged_in(fakes)
    refresh = RefreshSession(fakes.deps)
    a, b = await asyncio.gather(refresh(first.refresh_token, CTX), refresh(first.refresh_token, CTX))
    assert a.refresh_token == b.refresh_token
    assert len(fakes.db.rows(REFRESH_TOKENS)) == 2  # the original and exactly one successor


async def test_refresh_with_an_unknown_token_is_refused(fakes: Fakes) -> None:
    await logged_in(fakes)
    with pytest.raises(InvalidRefreshToken):
        await RefreshSession(fakes.deps)("made-up", CTX)


async def test_refresh_after_the_absolute_lifetime_is_refused(fakes: Fakes) -> None:
    _, first = await logged_in(fakes)
    token = first.refresh_token
    for _ in range(4):  # keep it from idling out
        fakes.clock.advance(days=6)
        token = (await RefreshSession(fakes.deps)(token, CTX)).refresh_token
    fakes.clock.advance(days=6)  # 30 days after login; the idle limit would allow 31
    with pytest.raises(InvalidRefreshToken):
        await RefreshSession(fakes.deps)(token, CTX)


async def test_suspended_user_cannot_refresh_and_the_session_is_revoked(fakes: Fakes) -> None:
    user, first = await logged_in(fakes)
    mutate(fakes, USERS, user.id, lambda u: setattr(u, "status", UserStatus.SUSPENDED))
    with pytest.raises(InvalidRefreshToken):
        await RefreshSession(fakes.deps)(first.refresh_token, CTX)
    assert fakes.db.get(SESSIONS, first.session.id).revoked_reason == "account_or_org_inactive"
    assert first.session.id in fakes.revocations.sessions


async def test_disabled_org_cannot_refresh(fakes: Fakes) -> None:
    user, first = await logged_in(fakes)
    mutate(fakes, ORGS, user.default_org_id, lambda o: setattr(o, "status", OrgStatus.DISABLED))
    with pytest.raises(InvalidRefreshToken):
        await RefreshSession(fakes.deps)(first.refresh_token, CTX)
    assert fakes.db.get(SESSIONS, first.session.id).revoked_at is not None


# -- logout and session management ----------------------------------------------------------------


async def test_logout_by_principal_revokes_the_session_everywhere(fakes: Fakes) -> None:
    _, first = await logged_in(fakes)
    principal = await principal_of(fakes, first.access.token)
    await Logout(fakes.deps)(principal, None, CTX)

    assert fakes.db.get(SESSIONS, first.session.id).revoked_reason == "logout"
    assert first.session.id in fakes.revocations.sessions
    with pytest.raises(InvalidToken):
        await principal_of(fakes, first.access.token)
    with pytest.raises(InvalidRefreshToken):
        await RefreshSession(fakes.deps)(first.refresh_token, CTX)
    assert fakes.db.audit_actions()[-1] == "session.logout"


async def test_logout_by_refresh_token_revokes_its_session(fakes: Fakes) -> None:
    _, first = await logged_in(fakes)
    await Logout(fakes.deps)(None, first.refresh_token, CTX)
    assert fakes.db.get(SESSIONS, first.session.id).revoked_reason == "logout"
    with pytest.raises(InvalidToken):
        await principal_of(fakes, first.access.token)


async def test_logout_with_an_unknown_refresh_token_does_nothing(fakes: Fakes) -> None:
    _, first = await logged_in(fakes)
    await Logout(fakes.deps)(None, "made-up", CTX)
    assert fakes.db.get(SESSIONS, first.session.id).revoked_at is None


async def test_logout_while_the_revocation_store_is_down_still_revokes_in_the_database(
    fakes: Fakes,
) -> None:
    _, first = await logged_in(fakes)
    fakes.revocations.up = False
    await Logout(fakes.deps)(None, first.refresh_token, CTX)
    assert fakes.db.get(SESSIONS, first.session.id).revoked_at is not None
    with pytest.raises(InvalidToken):  # the degraded bearer check asks the database
        await principal_of(fakes, first.access.token)


async def test_a_user_cannot_revoke_someone_elses_session(fakes: Fakes) -> None:
    _, mine = await logged_in(fakes)
    seed_user(fakes, "frank@example.com", PASSWORD)
    theirs = await login(fakes, "frank@example.com", PASSWORD)
    principal = await principal_of(fakes, mine.access.token)
    with pytest.raises(ApplicationError) as refused:
        await RevokeSession(fakes.deps)(principal, theirs.session.id, CTX)
    assert refused.value.code == "not_found"
    assert fakes.db.get(SESSIONS, theirs.session.id).revoked_at is None


async def test_revoke_other_sessions_keeps_the_current_one(fakes: Fakes) -> None:
    user, current = await logged_in(fakes)
    other = await login(fakes, EMAIL, PASSWORD)
    principal = await principal_of(fakes, current.access.token)
    assert len(await ListSessions(fakes.deps)(principal)) == 2
    assert await RevokeOtherSessions(fakes.deps)(principal, CTX) == 1
    assert [s.id for s in live_sessions(fakes, user.id)] == [current.session.id]
    assert other.session.id in fakes.revocations.sessions


async def test_profile_shows_the_current_org_and_memberships(fakes: Fakes) -> None:
    user, first = await logged_in(fakes)
    profile = await GetProfile(fakes.deps)(await principal_of(fakes, first.access.token))
    assert profile.user.id == user.id and profile.current_org.id == user.default_org_id
    assert [m.role for m, _ in profile.memberships] == [OrgRole.ADMINISTRATOR]


# -- passwords ------------------------------------------------------------------------------------


async def test_reset_password_revokes_every_session_and_sets_a_user_not_before(fakes: Fakes) -> None:
    user, first = await logged_in(fakes)
    second = await login(fakes, EMAIL, PASSWORD)
    await ForgotPassword(fakes.deps)(EMAIL, CTX)
    [mail] = fakes.mailer.to(EMAIL)
    raw = token_from_link(mail.body, "reset-password")
    fakes.clock.advance(minutes=5)

    await ResetPassword(fakes.deps)(raw, NEW_PASSWORD, CTX)

    assert live_sessions(fakes, user.id) == []
    assert {first.session.id, second.session.id} <= fakes.revocations.sessions.keys()
    assert fakes.revocations.users[user.id] == fakes.clock.now().replace(microsecond=0)
    for result in (first, second):
        with pytest.raises(InvalidToken):
            await principal_of(fakes, result.access.token)
    with pytest.raises(InvalidCredentials):
        await Login(fakes.deps)(EMAIL, PASSWORD, CTX)
    fresh = await login(fakes, EMAIL, NEW_PASSWORD)
    await principal_of(fakes, fresh.access.token)  # a login right after the reset is valid
    with pytest.raises(InvalidInput):  # and the link worked once
        await ResetPassword(fakes.deps)(raw, "yet another long passphrase", CTX)


async def test_reset_link_expires(fakes: Fakes) -> None:
    seed_user(fakes, EMAIL, PASSWORD)
    await ForgotPassword(fakes.deps)(EMAIL, CTX)
    raw = token_from_link(fakes.mailer.outbox[-1].body, "reset-password")
    fakes.clock.advance(fakes.deps.policy.reset_password_ttl)
    with pytest.raises(InvalidInput) as expired:
        await ResetPassword(fakes.deps)(raw, NEW_PASSWORD, CTX)
    assert expired.value.code == "invalid_or_expired_token"


async def test_a_weak_new_password_does_not_burn_the_reset_link(fakes: Fakes) -> None:
    user = seed_user(fakes, EMAIL, PASSWORD)
    await ForgotPassword(fakes.deps)(EMAIL, CTX)
    raw = token_from_link(fakes.mailer.outbox[-1].body, "reset-password")
    with pytest.raises(InvalidInput) as weak:
        await ResetPassword(fakes.deps)(raw, "short", CTX)
    assert weak.value.code == "weak_password"
    assert fakes.db.get(USERS, user.id).password_hash == user.password_hash
    await ResetPassword(fakes.deps)(raw, NEW_PASSWORD, CTX)


async def test_forgot_password_for_unknown_or_suspended_accounts_mails_nothing(fakes: Fakes) -> None:
    user = seed_user(fakes, EMAIL, PASSWORD)
    mutate(fakes, USERS, user.id, lambda u: setattr(u, "status", UserStatus.SUSPENDED))
    await ForgotPassword(fakes.deps)(EMAIL, CTX)
    await ForgotPassword(fakes.deps)("nobody@example.com", CTX)
    assert fakes.mailer.outbox == [] and fakes.db.rows(ONE_TIME_TOKENS) == []


async def test_forgot_password_mail_is_limited_per_address(fakes: Fakes) -> None:
    seed_user(fakes, EMAIL, PASSWORD)
    for _ in range(3):
        await ForgotPassword(fakes.deps)(EMAIL, CTX)
    with pytest.raises(RateLimited):
        await ForgotPassword(fakes.deps)(EMAIL, CTX)
    assert len(fakes.mailer.outbox) == 3


async def test_change_password_keeps_the_current_session_only(fakes: Fakes) -> None:
    user, current = await logged_in(fakes)
    other = await login(fakes, EMAIL, PASSWORD)
    principal = await principal_of(fakes, current.access.token)

    await ChangePassword(fakes.deps)(principal, PASSWORD, NEW_PASSWORD, CTX)

    assert [s.id for s in live_sessions(fakes, user.id)] == [current.session.id]
    assert fakes.db.get(SESSIONS, other.session.id).revoked_reason == "password_changed"
    assert other.session.id in fakes.revocations.sessions
    await principal_of(fakes, current.access.token)
    with pytest.raises(InvalidToken):
        await principal_of(fakes, other.access.token)
    assert fakes.db.get(USERS, user.id).password_hash == fakes.hasher.digest(NEW_PASSWORD, "p1")


async def test_change_password_with_a_wrong_current_password_changes_nothing(fakes: Fakes) -> None:
    user, current = await logged_in(fakes)
    other = await login(fakes, EMAIL, PASSWORD)
    principal = await principal_of(fakes, current.access.token)
    with pytest.raises(WrongPassword):
        await ChangePassword(fakes.deps)(principal, "not my password at all", NEW_PASSWORD, CTX)
    assert fakes.db.get(USERS, user.id).password_hash == user.password_hash
    assert fakes.db.get(SESSIONS, other.session.id).revoked_at is None
    assert fakes.db.audit_actions()[-1] == "password.change_failed"


async def test_change_password_to_a_weak_one_changes_nothing(fakes: Fakes) -> None:
    user, current = await logged_in(fakes)
    principal = await principal_of(fakes, current.access.token)
    with pytest.raises(InvalidInput) as weak:
        await ChangePassword(fakes.deps)(principal, PASSWORD, "short", CTX)
    assert weak.value.field == "new_password"
    assert fakes.db.get(USERS, user.id).password_hash == user.password_hash


# -- the bearer check -----------------------------------------------------------------------------


async def test_bearer_refuses_a_session_the_store_reports_revoked(fakes: Fakes) -> None:
    _, first = await logged_in(fakes)
    await fakes.revocations.revoke_session(first.session.id, first.session.absolute_expires_at)
    with pytest.raises(InvalidToken):
        await principal_of(fakes, first.access.token)


async def test_bearer_refuses_tokens_issued_before_the_users_not_before(fakes: Fakes) -> None:
    user, first = await logged_in(fakes)
    fakes.clock.advance(seconds=1)
    await fakes.revocations.set_user_not_before(user.id, fakes.clock.now())
    with pytest.raises(InvalidToken):
        await principal_of(fakes, first.access.token)


async def test_bearer_refuses_expired_and_unknown_tokens(fakes: Fakes) -> None:
    _, first = await logged_in(fakes)
    with pytest.raises(InvalidToken):
        await principal_of(fakes, "access-forged")
    fakes.clock.advance(seconds=fakes.tokens.ttl_seconds)
    with pytest.raises(InvalidToken):
        await principal_of(fakes, first.access.token)


async def test_bearer_with_an_unhealthy_store_consults_the_database(fakes: Fakes) -> None:
    user, live = await logged_in(fakes)
    revoked = await login(fakes, EMAIL, PASSWORD)
    mutate(fakes, SESSIONS, revoked.session.id, _revoke_in_db)
    fakes.revocations.up = False
    opened = fakes.uow.opened

    principal = await principal_of(fakes, live.access.token)
    assert principal.session_id == live.session.id
    with pytest.raises(InvalidToken):
        await principal_of(fakes, revoked.access.token)
    assert fakes.uow.opened == opened + 2  # each answer came from the database

    mutate(fakes, USERS, user.id, lambda u: setattr(u, "status", UserStatus.SUSPENDED))
    with pytest.raises(InvalidToken):
        await principal_of(fakes, live.access.token)


async def test_bearer_fallback_refuses_a_token_of_an_org_the_session_has_left(fakes: Fakes) -> None:
    _, live = await logged_in(fakes)
    other = Organisation(id=uuid.uuid4(), name="Elsewhere", created_at=fakes.clock.now())
    async with fakes.deps.uow() as uow:
        await uow.orgs.add(other)
        await uow.commit()
    mutate(fakes, SESSIONS, live.session.id, lambda s: setattr(s, "org_id", other.id))  # switched away
    fakes.revocations.up = False
    with pytest.raises(InvalidToken):
        await principal_of(fakes, live.access.token)


async def test_bearer_with_a_healthy_store_does_not_touch_the_database(fakes: Fakes) -> None:
    _, first = await logged_in(fakes)
    opened = fakes.uow.opened
    await principal_of(fakes, first.access.token)
    assert fakes.uow.opened == opened


def _revoke_in_db(session: Session) -> None:
    session.revoked_at = session.created_at
    session.revoked_reason = "logout"


# -- odds and ends the fakes must get right ------------------------------------------------------


async def test_rate_limiter_fake_counts_exactly_in_a_sliding_window(fakes: Fakes) -> None:
    limit = RateLimit(2, 60)
    assert (await fakes.limiter.hit("k", limit)).allowed
    fakes.clock.advance(seconds=30)
    assert (await fakes.limiter.hit("k", limit)).allowed
    refused = await fakes.limiter.hit("k", limit)
    assert not refused.allowed and refused.retry_after == 30
    fakes.clock.advance(seconds=30)
    assert (await fakes.limiter.hit("k", limit)).allowed


async def test_refresh_token_rows_are_bound_to_their_session(fakes: Fakes) -> None:
    async with fakes.deps.uow() as uow:
        with pytest.raises(IntegrityViolation):
            await uow.sessions.add_refresh_token(RefreshToken("x", uuid.uuid4(), fakes.clock.now()))


async def test_a_revocation_outlives_its_session_by_one_access_token_lifetime(fakes: Fakes) -> None:
    """A token issued just before the session's absolute expiry lives on for its own 15 minutes:
    the store must still know the session is revoked until then."""
    _, result = await logged_in(fakes)
    principal = await principal_of(fakes, result.access.token)
    await Logout(fakes.deps)(principal, None, CTX)
    kept = fakes.revocations.sessions[result.session.id]
    assert kept >= result.session.absolute_expires_at + fakes.deps.policy.access_token_ttl
