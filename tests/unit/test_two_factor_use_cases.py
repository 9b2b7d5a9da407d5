"""Two-factor use cases against in-memory fakes: enrolment, the login challenge, replay refusal,
recovery codes, the failure budget of a challenge, and the step-up window."""

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import pytest

from application.errors import ApplicationError, Conflict, RateLimited
from application.identity import RequestContext
from application.ports.secret_box import SecretBoxError
from application.step_up import ReauthRequired
from application.use_cases.login import Login, LoginResult
from application.use_cases.mfa_challenge import MfaRequired
from application.use_cases.sessions import Principal
from application.use_cases.two_factor import (
    CompleteMfaLogin,
    ConfirmTotp,
    DisableTotp,
    GetTwoFactorStatus,
    InvalidMfaCode,
    InvalidMfaToken,
    Reauthenticate,
    RegenerateRecoveryCodes,
    SetupTotp,
    WrongPassword,
    issue_recovery_codes,
    totp_context,
)
from domain.mfa import MFA_MAX_FAILURES, RECOVERY_CODE_COUNT
from domain.sessions import token_digest
from domain.users import User, UserStatus
from tests.unit.fakes import (
    CHALLENGES,
    SESSIONS,
    TOTP,
    USERS,
    Fakes,
    live_sessions,
    login,
    make_fakes,
    mutate,
    principal_of,
    seed_user,
)

CTX = RequestContext(ip="198.51.100.9", user_agent="pytest")
EMAIL = "gwen@example.com"
PASSWORD = "gwen's long enough passphrase"


@pytest.fixture
def fakes() -> Fakes:
    return make_fakes()


@dataclass
class Enrolled:
    user: User
    secret: str
    recovery_codes: list[str]
    principal: Principal  # of the session that enrolled
    access_token: str


async def enrol(fakes: Fakes) -> Enrolled:
    """A verified user who turned TOTP on; the clock is left one step past the confirming code."""
    user = seed_user(fakes, EMAIL, PASSWORD)
    result = await login(fakes, EMAIL, PASSWORD)
    principal = await principal_of(fakes, result.access.token)
    enrolment = await SetupTotp(fakes.deps)(principal, PASSWORD, CTX)
    codes = await ConfirmTotp(fakes.deps)(
        principal, fakes.totp.code_at(enrolment.secret, fakes.clock.now()), CTX
    )
    next_step(fakes)
    return Enrolled(user, enrolment.secret, codes, principal, result.access.token)


def next_step(fakes: Fakes) -> None:
    fakes.clock.advance(seconds=30)


def current_code(fakes: Fakes, secret: str) -> str:
    return fakes.totp.code_at(secret, fakes.clock.now())


async def challenge(fakes: Fakes) -> str:
    result = await Login(fakes.deps)(EMAIL, PASSWORD, CTX)
    assert isinstance(result, MfaRequired)
    return result.mfa_token


# -- enrolment ------------------------------------------------------------------------------------


async def test_setup_returns_a_secret_uri_and_qr_and_stores_the_secret_only_sealed(fakes: Fakes) -> None:
    user = seed_user(fakes, EMAIL, PASSWORD)
    principal = await principal_of(fakes, (await login(fakes, EMAIL, PASSWORD)).access.token)

    enrolment = await SetupTotp(fakes.deps)(principal, PASSWORD, CTX)

    assert enrolment.otpauth_uri.startswith("otpauth://totp/Bulwark:gwen%40example.com?secret=")
    assert fakes.qr.rendered == [enrolment.otpauth_uri] and enrolment.qr_svg.startswith("<svg")
    credential = fakes.db.get(TOTP, user.id)
    assert not credential.enabled
    assert enrolment.secret.encode() not in credential.secret_envelope
    opened = await fakes.secret_box.open(credential.secret_envelope, totp_context(user.id))
    assert opened == enrolment.secret.encode()
    other = seed_user(fakes, "other@example.com", PASSWORD)
    with pytest.raises(SecretBoxError):  # bound to this user's row
        await fakes.secret_box.open(credential.secret_envelope, totp_context(other.id))
    status = await GetTwoFactorStatus(fakes.deps)(principal)
    assert not status.enabled


async def test_setup_refuses_a_wrong_password(fakes: Fakes) -> None:
    user = seed_user(fakes, EMAIL, PASSWORD)
    principal = await principal_of(fakes, (await login(fakes, EMAIL, PASSWORD)).access.token)
    with pytest.raises(WrongPassword):
        await SetupTotp(fakes.deps)(principal, "not the password at all", CTX)
    assert fakes.db.get(TOTP, user.id) is None


async def test_confirm_needs_a_valid_code(fakes: Fakes) -> None:
    user = seed_user(fakes, EMAIL, PASSWORD)
    principal = await principal_of(fakes, (await login(fakes, EMAIL, PASSWORD)).access.token)
    enrolment = await SetupTotp(fakes.deps)(principal, PASSWORD, CTX)

    wrong = fakes.totp.code_at(enrolment.secret, fakes.clock.now(), steps_ahead=5)
    with pytest.raises(InvalidMfaCode):
        await ConfirmTotp(fakes.deps)(principal, wrong, CTX)
    assert not fakes.db.get(TOTP, user.id).enabled
    assert "mfa.failure" in fakes.db.audit_actions()

    codes = await ConfirmTotp(fakes.deps)(principal, current_code(fakes, enrolment.secret), CTX)

    assert len(codes) == RECOVERY_CODE_COUNT == len(set(codes))
    credential = fakes.db.get(TOTP, user.id)
    assert credential.enabled and credential.last_step == fakes.totp.step_at(fakes.clock.now())
    status = await GetTwoFactorStatus(fakes.deps)(principal)
    assert status.enabled and status.recovery_codes_left == RECOVERY_CODE_COUNT


async def test_the_code_that_confirmed_enrolment_cannot_complete_a_login(fakes: Fakes) -> None:
    user = seed_user(fakes, EMAIL, PASSWORD)
    principal = await principal_of(fakes, (await login(fakes, EMAIL, PASSWORD)).access.token)
    enrolment = await SetupTotp(fakes.deps)(principal, PASSWORD, CTX)
    code = current_code(fakes, enrolment.secret)
    await ConfirmTotp(fakes.deps)(principal, code, CTX)
    token = await challenge(fakes)
    with pytest.raises(InvalidMfaCode):
        await CompleteMfaLogin(fakes.deps)(token, code, None, CTX)
    assert len(live_sessions(fakes, user.id)) == 1  # only the enrolling one


async def test_setup_while_enabled_is_a_conflict(fakes: Fakes) -> None:
    enrolled = await enrol(fakes)
    with pytest.raises(Conflict) as refused:
        await SetupTotp(fakes.deps)(enrolled.principal, PASSWORD, CTX)
    assert refused.value.code == "2fa_already_enabled"


async def test_confirm_without_setup_is_a_conflict(fakes: Fakes) -> None:
    seed_user(fakes, EMAIL, PASSWORD)
    principal = await principal_of(fakes, (await login(fakes, EMAIL, PASSWORD)).access.token)
    with pytest.raises(Conflict) as refused:
        await ConfirmTotp(fakes.deps)(principal, "123456", CTX)
    assert refused.value.code == "2fa_not_pending"


# -- the login challenge --------------------------------------------------------------------------


async def test_a_valid_code_completes_the_login(fakes: Fakes) -> None:
    enrolled = await enrol(fakes)
    token = await challenge(fakes)
    result = await CompleteMfaLogin(fakes.deps)(token, current_code(fakes, enrolled.secret), None, CTX)
    assert isinstance(result, LoginResult)
    assert (await principal_of(fakes, result.access.token)).session_id == result.session.id
    assert fakes.db.audit_events("login.success")[-1].details == {"mfa": "totp"}
    assert fakes.db.get(CHALLENGES, token_digest(token)).used_at is not None
    with pytest.raises(InvalidMfaToken):  # the challenge is single use
        await CompleteMfaLogin(fakes.deps)(token, current_code(fakes, enrolled.secret), None, CTX)


async def test_replay_of_the_same_step_is_refused(fakes: Fakes) -> None:
    enrolled = await enrol(fakes)
    code = current_code(fakes, enrolled.secret)
    await CompleteMfaLogin(fakes.deps)(await challenge(fakes), code, None, CTX)
    sessions_before = len(fakes.db.rows(SESSIONS))

    with pytest.raises(InvalidMfaCode):
        await CompleteMfaLogin(fakes.deps)(await challenge(fakes), code, None, CTX)

    assert len(fakes.db.rows(SESSIONS)) == sessions_before
    assert fakes.db.audit_actions().count("mfa.replay_refused") == 1
    next_step(fakes)
    await CompleteMfaLogin(fakes.deps)(
        await challenge(fakes), current_code(fakes, enrolled.secret), None, CTX
    )


async def test_an_older_step_is_refused_once_a_newer_one_was_accepted(fakes: Fakes) -> None:
    enrolled = await enrol(fakes)
    previous = fakes.totp.code_at(enrolled.secret, fakes.clock.now(), steps_ahead=-1)
    newer = fakes.totp.code_at(enrolled.secret, fakes.clock.now(), steps_ahead=1)  # clock drift
    await CompleteMfaLogin(fakes.deps)(await challenge(fakes), newer, None, CTX)
    with pytest.raises(InvalidMfaCode):
        await CompleteMfaLogin(fakes.deps)(await challenge(fakes), previous, None, CTX)


async def test_the_same_code_raced_on_two_challenges_logs_in_exactly_once(fakes: Fakes) -> None:
    enrolled = await enrol(fakes)
    first, second = await challenge(fakes), await challenge(fakes)
    code = current_code(fakes, enrolled.secret)
    complete = CompleteMfaLogin(fakes.deps)
    outcomes = await asyncio.gather(
        complete(first, code, None, CTX), complete(second, code, None, CTX), return_exceptions=True
    )
    assert sorted(type(o).__name__ for o in outcomes) == ["InvalidMfaCode", "LoginResult"]


async def test_a_recovery_code_works_once(fakes: Fakes) -> None:
    enrolled = await enrol(fakes)
    code = enrolled.recovery_codes[0]
    retyped = code.replace("-", "").lower()  # people type them any which way

    result = await CompleteMfaLogin(fakes.deps)(await challenge(fakes), None, retyped, CTX)

    assert isinstance(result, LoginResult)
    [used] = fakes.db.audit_events("mfa.recovery_code_used")
    assert used.details["remaining"] == RECOVERY_CODE_COUNT - 1
    with pytest.raises(InvalidMfaCode):
        await CompleteMfaLogin(fakes.deps)(await challenge(fakes), None, code, CTX)
    status = await GetTwoFactorStatus(fakes.deps)(enrolled.principal)
    assert status.recovery_codes_left == RECOVERY_CODE_COUNT - 1


async def test_another_users_recovery_code_is_refused(fakes: Fakes) -> None:
    enrolled = await enrol(fakes)
    other = seed_user(fakes, "hal@example.com", PASSWORD)
    async with fakes.deps.uow() as uow:
        others_codes = await issue_recovery_codes(fakes.deps, uow, other.id)
        await uow.commit()
    with pytest.raises(InvalidMfaCode):
        await CompleteMfaLogin(fakes.deps)(await challenge(fakes), None, others_codes[0], CTX)
    assert len(live_sessions(fakes, enrolled.user.id)) == 1


async def test_five_failures_kill_the_challenge(fakes: Fakes) -> None:
    enrolled = await enrol(fakes)
    token = await challenge(fakes)
    wrong = fakes.totp.code_at(enrolled.secret, fakes.clock.now(), steps_ahead=7)
    for _ in range(MFA_MAX_FAILURES):
        with pytest.raises(InvalidMfaCode):
            await CompleteMfaLogin(fakes.deps)(token, wrong, None, CTX)

    with pytest.raises(InvalidMfaToken):  # even the right code is too late now
        await CompleteMfaLogin(fakes.deps)(token, current_code(fakes, enrolled.secret), None, CTX)

    assert len(live_sessions(fakes, enrolled.user.id)) == 1  # only the enrolling session
    assert fakes.db.rows(CHALLENGES)[0].failures == MFA_MAX_FAILURES
    # The right code was not spent by the refused attempt.
    await CompleteMfaLogin(fakes.deps)(
        await challenge(fakes), current_code(fakes, enrolled.secret), None, CTX
    )


async def test_a_challenge_expires(fakes: Fakes) -> None:
    enrolled = await enrol(fakes)
    token = await challenge(fakes)
    fakes.clock.advance(fakes.deps.policy.mfa_token_ttl)
    with pytest.raises(InvalidMfaToken):
        await CompleteMfaLogin(fakes.deps)(token, current_code(fakes, enrolled.secret), None, CTX)


async def test_a_user_suspended_during_the_challenge_cannot_complete_it(fakes: Fakes) -> None:
    enrolled = await enrol(fakes)
    token = await challenge(fakes)
    mutate(fakes, USERS, enrolled.user.id, lambda u: setattr(u, "status", UserStatus.SUSPENDED))
    with pytest.raises(InvalidMfaToken):
        await CompleteMfaLogin(fakes.deps)(token, current_code(fakes, enrolled.secret), None, CTX)


async def test_second_factor_attempts_are_rate_limited_before_the_code_is_checked(fakes: Fakes) -> None:
    enrolled = await enrol(fakes)
    token = await challenge(fakes)
    last_step = fakes.db.get(TOTP, enrolled.user.id).last_step
    fakes.limiter.refuse("mfa-user")
    with pytest.raises(RateLimited):
        await CompleteMfaLogin(fakes.deps)(token, current_code(fakes, enrolled.secret), None, CTX)
    assert fakes.db.get(TOTP, enrolled.user.id).last_step == last_step
    assert fakes.db.rows(CHALLENGES)[0].failures == 0


async def test_completing_without_any_code_is_invalid_input(fakes: Fakes) -> None:
    await enrol(fakes)
    with pytest.raises(ApplicationError) as refused:
        await CompleteMfaLogin(fakes.deps)(await challenge(fakes), None, None, CTX)
    assert refused.value.code == "invalid_request"


# -- step-up --------------------------------------------------------------------------------------


async def test_step_up_window_is_enforced_and_reauthenticate_moves_auth_time(fakes: Fakes) -> None:
    enrolled = await enrol(fakes)
    fakes.clock.advance(fakes.deps.policy.stepup_window + timedelta(seconds=1))
    with pytest.raises(ReauthRequired):
        await DisableTotp(fakes.deps)(
            enrolled.principal, PASSWORD, current_code(fakes, enrolled.secret), None, CTX
        )
    with pytest.raises(ReauthRequired):
        await RegenerateRecoveryCodes(fakes.deps)(
            enrolled.principal, current_code(fakes, enrolled.secret), CTX
        )
    assert fakes.db.get(TOTP, enrolled.user.id).enabled

    issued = await Reauthenticate(fakes.deps)(
        enrolled.principal, PASSWORD, current_code(fakes, enrolled.secret), CTX
    )

    now = fakes.clock.now()
    assert fakes.db.get(SESSIONS, enrolled.principal.session_id).auth_time == now
    assert issued.claims.auth_time == now.replace(microsecond=0)
    fresh = await principal_of(fakes, issued.token)
    next_step(fakes)
    await DisableTotp(fakes.deps)(fresh, PASSWORD, current_code(fakes, enrolled.secret), None, CTX)
    assert fakes.db.get(TOTP, enrolled.user.id) is None


async def test_setup_also_needs_a_recent_authentication(fakes: Fakes) -> None:
    seed_user(fakes, EMAIL, PASSWORD)
    principal = await principal_of(fakes, (await login(fakes, EMAIL, PASSWORD)).access.token)
    fakes.clock.advance(fakes.deps.policy.stepup_window + timedelta(seconds=1))
    with pytest.raises(ReauthRequired):
        await SetupTotp(fakes.deps)(principal, PASSWORD, CTX)


async def test_reauthenticate_with_2fa_on_needs_a_fresh_code(fakes: Fakes) -> None:
    enrolled = await enrol(fakes)
    before = fakes.db.get(SESSIONS, enrolled.principal.session_id).auth_time
    fakes.clock.advance(minutes=11)
    with pytest.raises(InvalidMfaCode):
        await Reauthenticate(fakes.deps)(enrolled.principal, PASSWORD, None, CTX)
    with pytest.raises(WrongPassword):
        await Reauthenticate(fakes.deps)(
            enrolled.principal, "wrong but long enough", current_code(fakes, enrolled.secret), CTX
        )
    assert fakes.db.get(SESSIONS, enrolled.principal.session_id).auth_time == before


async def test_reauthenticate_on_a_revoked_session_is_refused(fakes: Fakes) -> None:
    seed_user(fakes, EMAIL, PASSWORD)
    principal = await principal_of(fakes, (await login(fakes, EMAIL, PASSWORD)).access.token)
    mutate(fakes, SESSIONS, principal.session_id, lambda s: setattr(s, "revoked_at", s.created_at))
    with pytest.raises(ApplicationError) as refused:
        await Reauthenticate(fakes.deps)(principal, PASSWORD, None, CTX)
    assert refused.value.code == "not_authenticated"


# -- disabling and recovery codes -----------------------------------------------------------------


async def test_disable_needs_password_and_code_and_revokes_other_sessions(fakes: Fakes) -> None:
    enrolled = await enrol(fakes)
    other = await CompleteMfaLogin(fakes.deps)(
        await challenge(fakes), current_code(fakes, enrolled.secret), None, CTX
    )
    next_step(fakes)
    with pytest.raises(WrongPassword):
        await DisableTotp(fakes.deps)(
            enrolled.principal, "wrong but long enough", current_code(fakes, enrolled.secret), None, CTX
        )
    with pytest.raises(InvalidMfaCode):
        await DisableTotp(fakes.deps)(enrolled.principal, PASSWORD, "000000", None, CTX)
    assert fakes.db.get(TOTP, enrolled.user.id).enabled

    await DisableTotp(fakes.deps)(
        enrolled.principal, PASSWORD, current_code(fakes, enrolled.secret), None, CTX
    )

    assert fakes.db.get(TOTP, enrolled.user.id) is None
    assert [s.id for s in live_sessions(fakes, enrolled.user.id)] == [enrolled.principal.session_id]
    assert other.session.id in fakes.revocations.sessions
    status = await GetTwoFactorStatus(fakes.deps)(enrolled.principal)
    assert not status.enabled and status.recovery_codes_left == 0
    assert isinstance(await Login(fakes.deps)(EMAIL, PASSWORD, CTX), LoginResult)  # no challenge now


async def test_regenerating_recovery_codes_retires_the_old_ones(fakes: Fakes) -> None:
    enrolled = await enrol(fakes)
    fresh = await RegenerateRecoveryCodes(fakes.deps)(
        enrolled.principal, current_code(fakes, enrolled.secret), CTX
    )
    assert set(fresh).isdisjoint(enrolled.recovery_codes)
    with pytest.raises(InvalidMfaCode):
        await CompleteMfaLogin(fakes.deps)(await challenge(fakes), None, enrolled.recovery_codes[1], CTX)
    await CompleteMfaLogin(fakes.deps)(await challenge(fakes), None, fresh[0], CTX)


async def test_regenerating_recovery_codes_will_not_take_a_recovery_code(fakes: Fakes) -> None:
    enrolled = await enrol(fakes)
    with pytest.raises(InvalidMfaCode):
        await RegenerateRecoveryCodes(fakes.deps)(enrolled.principal, enrolled.recovery_codes[0], CTX)
    status = await GetTwoFactorStatus(fakes.deps)(enrolled.principal)
    assert status.recovery_codes_left == RECOVERY_CODE_COUNT


async def test_a_password_reset_ends_a_pending_second_factor_step(fakes: Fakes) -> None:
    """A thief holding the password step (and soon a code) loses it when the owner resets."""
    from application.use_cases.passwords import ForgotPassword, ResetPassword

    enrolled = await enrol(fakes)
    pending = await Login(fakes.deps)(EMAIL, PASSWORD, CTX)
    assert isinstance(pending, MfaRequired)
    await ForgotPassword(fakes.deps)(EMAIL, CTX)
    link = fakes.mailer.outbox[-1].body
    raw = link.split("reset-password?token=")[1].split()[0]
    await ResetPassword(fakes.deps)(raw, "an entirely new long passphrase", CTX)

    code = fakes.totp.code_at(enrolled.secret, fakes.clock.now())
    with pytest.raises(InvalidMfaToken):
        await CompleteMfaLogin(fakes.deps)(pending.mfa_token, code, None, CTX)


async def test_2fa_setup_checks_the_password_only_within_the_signed_in_password_budget(fakes: Fakes) -> None:
    user = seed_user(fakes, EMAIL, PASSWORD)
    result = await login(fakes, EMAIL, PASSWORD)
    principal = await principal_of(fakes, result.access.token)
    fakes.limiter.refuse("reauth-user")
    calls_before = list(fakes.trace)
    with pytest.raises(RateLimited):
        await SetupTotp(fakes.deps)(principal, "a wrong guess of the password", CTX)
    assert not any("verify" in call for call in fakes.trace[len(calls_before) :])  # no hash was spent
    assert user.id == principal.user_id
