"""TOTP two-factor authentication: enrolment, the login challenge, recovery codes, step-up."""

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from application import step_up
from application.errors import Conflict, InvalidInput, NotAuthenticated
from application.identity import IdentityDeps, RequestContext
from application.ports.secret_box import SecretContext
from application.ports.token_issuer import IssuedToken
from application.ports.unit_of_work import UnitOfWork
from application.use_cases.login import LoginResult, active_org_for, start_session
from application.use_cases.session_tokens import enforce_limits, revoke_in_store, tiers
from application.use_cases.sessions import Principal
from domain.mfa import RECOVERY_CODE_COUNT, TotpCredential, normalise_recovery_code
from domain.sessions import token_digest
from domain.users import User

_RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # 32 symbols, no 0/O or 1/I look-alikes
_RECOVERY_LENGTH = 12  # 12 x 5 bits = 60 bits per code


class InvalidMfaCode(NotAuthenticated):
    """The code is not valid."""

    code = "invalid_mfa_code"


class InvalidMfaToken(NotAuthenticated):
    """The sign-in step has expired or failed too often; log in again."""

    code = "invalid_mfa_token"


class WrongPassword(NotAuthenticated):
    """The password is wrong."""

    code = "invalid_credentials"


def totp_context(user_id: uuid.UUID) -> SecretContext:
    return SecretContext(table="totp_credentials", row_id=str(user_id), purpose="totp_secret")


def new_recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, _RECOVERY_LENGTH, 4))


def recovery_code_hash(key: bytes, user_id: uuid.UUID, code: str) -> str:
    """Keyed with a server-side secret: 60-bit codes must not be brute-forceable from a DB dump."""
    message = f"{user_id}|{normalise_recovery_code(code)}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class TotpEnrolment:
    secret: str
    otpauth_uri: str
    qr_svg: str


@dataclass(frozen=True)
class TwoFactorStatus:
    enabled: bool
    confirmed_at: datetime | None
    recovery_codes_left: int


class SecondFactor:
    """Checks a TOTP code or a recovery code for a user, refusing replays atomically. Every
    failure looks the same to the caller; the audit log says which it was."""

    def __init__(self, deps: IdentityDeps) -> None:
        self.deps = deps

    async def limit(self, user_id: uuid.UUID, ctx: RequestContext) -> None:
        policy = self.deps.policy
        await enforce_limits(
            self.deps,
            ctx,
            tiers("mfa-user", user_id, policy.mfa_per_user) + tiers("mfa-ip", ctx.ip, policy.mfa_per_ip),
        )

    async def secret_of(self, user_id: uuid.UUID, *, confirmed: bool = True) -> str | None:
        """The user's TOTP secret, opened outside any unit of work (the secret box may need the
        database itself, and SQLite allows one writer at a time)."""
        async with self.deps.uow() as uow:
            credential = await uow.mfa.get_totp(user_id)
        if credential is None or credential.enabled is not confirmed:
            return None
        return (await self.deps.secret_box.open(credential.secret_envelope, totp_context(user_id))).decode()

    async def check(
        self,
        uow: UnitOfWork,
        user: User,
        ctx: RequestContext,
        *,
        secret: str | None,
        code: str | None,
        recovery_code: str | None,
        org_id: uuid.UUID | None = None,
    ) -> str | None:
        """Returns the method used ("totp" or "recovery_code"), or None after auditing why not.
        `secret` is the user's confirmed TOTP secret (None: 2FA is off, nothing passes)."""
        deps = self.deps
        now = deps.clock.now()
        if secret is None:
            return None
        if code:
            step = deps.totp.matching_step(secret, code, now, after_step=None)
            if step is not None and await uow.mfa.advance_totp_step(user.id, step):
                return "totp"
            action = "mfa.replay_refused" if step is not None else "mfa.failure"
            await uow.audit.append(
                ctx.event(action, actor=user.id, org=org_id, target_type="user", target_id=user.id)
            )
            return None
        if recovery_code:
            digest = recovery_code_hash(deps.recovery_code_key, user.id, recovery_code)
            if await uow.mfa.use_recovery_code(user.id, digest, now):
                left = await uow.mfa.recovery_codes_left(user.id)
                await uow.audit.append(
                    ctx.event(
                        "mfa.recovery_code_used",
                        actor=user.id,
                        org=org_id,
                        target_type="user",
                        target_id=user.id,
                        remaining=left,
                    )
                )
                return "recovery_code"
            await uow.audit.append(
                ctx.event(
                    "mfa.failure",
                    actor=user.id,
                    org=org_id,
                    target_type="user",
                    target_id=user.id,
                    method="recovery_code",
                )
            )
            return None
        return None


async def issue_recovery_codes(deps: IdentityDeps, uow: UnitOfWork, user_id: uuid.UUID) -> list[str]:
    codes = [new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    hashes = [recovery_code_hash(deps.recovery_code_key, user_id, code) for code in codes]
    await uow.mfa.replace_recovery_codes(user_id, hashes, deps.clock.now())
    return codes


async def limit_password_checks(deps: IdentityDeps, principal: Principal, ctx: RequestContext) -> None:
    """Every signed-in password check (step-up, 2FA setup and removal) shares one budget, so a
    stolen access token is no password-guessing oracle (nor a way to burn argon2 time)."""
    await enforce_limits(deps, ctx, tiers("reauth-user", principal.user_id, deps.policy.login_per_account))


def require_recent_auth(deps: IdentityDeps, principal: Principal) -> None:
    step_up.require_recent_auth(principal.auth_time, deps.clock.now(), deps.policy.stepup_window)


@dataclass
class CompleteMfaLogin:
    deps: IdentityDeps

    async def __call__(
        self, mfa_token: str, code: str | None, recovery_code: str | None, ctx: RequestContext
    ) -> LoginResult:
        deps = self.deps
        if not code and not recovery_code:
            raise InvalidInput("Send `code` or `recovery_code`.", code="invalid_request", field="code")
        digest = token_digest(mfa_token)
        now = deps.clock.now()
        async with deps.uow() as uow:
            challenge = await uow.mfa.get_challenge(digest)
            if challenge is None or not challenge.usable(now):
                raise InvalidMfaToken()
            user_id = challenge.user_id
        second = SecondFactor(deps)
        await second.limit(user_id, ctx)
        secret = await second.secret_of(user_id)
        async with deps.uow() as uow:
            user = await uow.users.get(user_id)
            if user is None or user.is_suspended:
                raise InvalidMfaToken()
            method = await second.check(uow, user, ctx, secret=secret, code=code, recovery_code=recovery_code)
            if method is None:
                await uow.mfa.record_challenge_failure(digest)
                await uow.commit()
                raise InvalidMfaCode()
            if not await uow.mfa.consume_challenge(digest, now):
                raise InvalidMfaToken()
            org = await active_org_for(uow, user)
            session, raw = await start_session(deps, uow, user, org, ctx)
            await uow.audit.append(
                ctx.event(
                    "login.success",
                    actor=user.id,
                    org=org.id,
                    target_type="session",
                    target_id=session.id,
                    mfa=method,
                )
            )
            await uow.commit()
        access = deps.tokens.issue(
            sub=user.id,
            sid=session.id,
            org=org.id,
            prole=str(user.platform_role),
            auth_time=session.auth_time,
        )
        return LoginResult(access, raw, user, session)


@dataclass
class SetupTotp:
    deps: IdentityDeps

    async def __call__(self, principal: Principal, password: str, ctx: RequestContext) -> TotpEnrolment:
        deps = self.deps
        require_recent_auth(deps, principal)
        await limit_password_checks(deps, principal, ctx)
        secret = deps.totp.new_secret()
        # Sealed before the transaction: the secret box may write a data key of its own.
        envelope = await deps.secret_box.seal(secret.encode(), totp_context(principal.user_id))
        async with deps.uow() as uow:
            user = await _user(uow, principal)
            if not (await deps.hasher.verify(password, user.password_hash, user.pepper_version)).valid:
                raise WrongPassword()
            existing = await uow.mfa.get_totp(user.id)
            if existing is not None and existing.enabled:
                raise Conflict("Two-factor authentication is already on.", code="2fa_already_enabled")
            await uow.mfa.put_pending_totp(TotpCredential(user.id, envelope, deps.clock.now()))
            await uow.audit.append(
                ctx.event(
                    "2fa.setup_started",
                    actor=user.id,
                    org=principal.org_id,
                    target_type="user",
                    target_id=user.id,
                )
            )
            await uow.commit()
        uri = deps.totp.provisioning_uri(secret, user.email, deps.policy.totp_issuer)
        return TotpEnrolment(secret=secret, otpauth_uri=uri, qr_svg=deps.qr.svg(uri))


@dataclass
class ConfirmTotp:
    deps: IdentityDeps

    async def __call__(self, principal: Principal, code: str, ctx: RequestContext) -> list[str]:
        deps = self.deps
        second = SecondFactor(deps)
        await second.limit(principal.user_id, ctx)
        now = deps.clock.now()
        secret = await second.secret_of(principal.user_id, confirmed=False)
        async with deps.uow() as uow:
            user = await _user(uow, principal)
            credential = await uow.mfa.get_totp(user.id)
            if credential is not None and credential.enabled:
                raise Conflict("Two-factor authentication is already on.", code="2fa_already_enabled")
            if credential is None or secret is None:
                raise Conflict("Start with POST /api/v1/me/2fa/totp/setup.", code="2fa_not_pending")
            step = deps.totp.matching_step(secret, code, now, after_step=None)
            if step is None or not await uow.mfa.confirm_totp(user.id, now, step):
                await uow.audit.append(
                    ctx.event(
                        "mfa.failure",
                        actor=user.id,
                        org=principal.org_id,
                        target_type="user",
                        target_id=user.id,
                    )
                )
                await uow.commit()
                raise InvalidMfaCode()
            codes = await issue_recovery_codes(deps, uow, user.id)
            await uow.audit.append(
                ctx.event(
                    "2fa.enabled", actor=user.id, org=principal.org_id, target_type="user", target_id=user.id
                )
            )
            await uow.audit.append(
                ctx.event(
                    "mfa.recovery_codes_generated",
                    actor=user.id,
                    org=principal.org_id,
                    target_type="user",
                    target_id=user.id,
                )
            )
            await uow.commit()
        return codes


@dataclass
class RegenerateRecoveryCodes:
    deps: IdentityDeps

    async def __call__(self, principal: Principal, code: str, ctx: RequestContext) -> list[str]:
        deps = self.deps
        require_recent_auth(deps, principal)
        second = SecondFactor(deps)
        await second.limit(principal.user_id, ctx)
        secret = await second.secret_of(principal.user_id)
        async with deps.uow() as uow:
            user = await _user(uow, principal)
            method = await second.check(
                uow, user, ctx, secret=secret, code=code, recovery_code=None, org_id=principal.org_id
            )
            if method != "totp":
                await uow.commit()
                raise InvalidMfaCode()
            codes = await issue_recovery_codes(deps, uow, user.id)
            await uow.audit.append(
                ctx.event(
                    "mfa.recovery_codes_generated",
                    actor=user.id,
                    org=principal.org_id,
                    target_type="user",
                    target_id=user.id,
                )
            )
            await uow.commit()
        return codes


@dataclass
class DisableTotp:
    deps: IdentityDeps

    async def __call__(
        self,
        principal: Principal,
        password: str,
        code: str | None,
        recovery_code: str | None,
        ctx: RequestContext,
    ) -> None:
        deps = self.deps
        require_recent_auth(deps, principal)
        second = SecondFactor(deps)
        await second.limit(principal.user_id, ctx)
        await limit_password_checks(deps, principal, ctx)
        now = deps.clock.now()
        secret = await second.secret_of(principal.user_id)
        async with deps.uow() as uow:
            user = await _user(uow, principal)
            if not (await deps.hasher.verify(password, user.password_hash, user.pepper_version)).valid:
                raise WrongPassword()
            if secret is None:
                raise Conflict("Two-factor authentication is not on.", code="2fa_not_enabled")
            method = await second.check(
                uow, user, ctx, secret=secret, code=code, recovery_code=recovery_code, org_id=principal.org_id
            )
            if method is None:
                await uow.commit()
                raise InvalidMfaCode()
            await uow.mfa.delete_totp(user.id)
            await uow.mfa.drop_challenges(user.id)
            ids = await uow.sessions.revoke_all_for_user(
                user.id, now, "2fa_disabled", except_session=principal.session_id
            )
            await uow.audit.append(
                ctx.event(
                    "2fa.disabled",
                    actor=user.id,
                    org=principal.org_id,
                    target_type="user",
                    target_id=user.id,
                    sessions_revoked=len(ids),
                )
            )
            await uow.commit()
        await revoke_in_store(deps, ids, now + deps.policy.session_absolute)


@dataclass
class GetTwoFactorStatus:
    deps: IdentityDeps

    async def __call__(self, principal: Principal) -> TwoFactorStatus:
        async with self.deps.uow() as uow:
            credential = await uow.mfa.get_totp(principal.user_id)
            if credential is None or not credential.enabled:
                return TwoFactorStatus(enabled=False, confirmed_at=None, recovery_codes_left=0)
            left = await uow.mfa.recovery_codes_left(principal.user_id)
        return TwoFactorStatus(enabled=True, confirmed_at=credential.confirmed_at, recovery_codes_left=left)


@dataclass
class Reauthenticate:
    """Step-up: password (and code when 2FA is on) again; the session's auth_time moves to now."""

    deps: IdentityDeps

    async def __call__(
        self, principal: Principal, password: str, code: str | None, ctx: RequestContext
    ) -> IssuedToken:
        deps = self.deps
        await limit_password_checks(deps, principal, ctx)
        now = deps.clock.now()
        second = SecondFactor(deps)
        secret = await second.secret_of(principal.user_id)
        async with deps.uow() as uow:
            user = await _user(uow, principal)
        # No unit of work is open while argon2 runs or while a limit trip writes its own audit
        # entry: SQLite has one writer, and a request must never wait on a lock it holds itself.
        if not (await deps.hasher.verify(password, user.password_hash, user.pepper_version)).valid:
            async with deps.uow() as uow:
                await uow.audit.append(
                    ctx.event("reauth.failure", actor=user.id, org=principal.org_id, reason="wrong_password")
                )
                await uow.commit()
            raise WrongPassword()
        if secret is not None:
            await second.limit(user.id, ctx)
        async with deps.uow() as uow:
            user = await _user(uow, principal)
            if secret is not None:
                method = await second.check(
                    uow, user, ctx, secret=secret, code=code, recovery_code=None, org_id=principal.org_id
                )
                if method is None:
                    await uow.commit()
                    raise InvalidMfaCode()
            session = await uow.sessions.get(principal.session_id)
            if (
                session is None
                or not session.is_live(now)
                or not await uow.sessions.amend(session.id, auth_time=now)
            ):
                raise NotAuthenticated()
            await uow.audit.append(
                ctx.event(
                    "reauth.success",
                    actor=user.id,
                    org=principal.org_id,
                    target_type="session",
                    target_id=session.id,
                )
            )
            await uow.commit()
        return deps.tokens.issue(
            sub=user.id, sid=session.id, org=session.org_id, prole=str(user.platform_role), auth_time=now
        )


async def _user(uow: UnitOfWork, principal: Principal) -> User:
    user = await uow.users.get(principal.user_id)
    if user is None:
        raise NotAuthenticated()
    return user
