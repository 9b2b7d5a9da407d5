"""Admin login: email, admin password and TOTP code (or a recovery code), all three every time.

Every attempt is counted in the limiter before any hashing (per account and per IP, atomically),
so parallel guesses can never get more verifications than the limit allows. The attempt that
uses up the account's allowance and fails, or any attempt past it, locks the account for a growing
but always temporary period. A lock, a limit, an unknown account and every wrong factor answer
exactly alike, after the same hashing work; only the audit log says which it was."""

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NoReturn

from application.admin_principal import AdminPrincipal
from application.errors import InvalidInput, NotAuthenticated
from application.identity import IdentityDeps, RequestContext
from application.ports.admin_tokens import AdminTokenIssuer, InvalidAdminToken
from application.ports.mailer import MailMessage
from application.ports.password_hasher import PasswordHasher
from application.ports.rate_limiter import LimitDecision, RateLimit
from application.ports.secret_box import SecretContext
from application.ports.unit_of_work import UnitOfWork
from application.use_cases.session_tokens import tiers
from application.use_cases.two_factor import recovery_code_hash
from domain.audit import ActorKind
from domain.platform_admins import AdminSession, PlatformAdmin, lock_duration
from domain.text_rules import has_control_characters
from domain.users import User, normalise_email

log = logging.getLogger("bulwark.admin")

__all__ = ["AdminPrincipal"]  # where the admin guard and older callers look for it

# Longer input is refused before anything is counted or hashed (argon2 sees a fixed-size HMAC
# anyway; this only keeps absurd bodies out of the audit log and the limiter keys).
_MAX_EMAIL = 320
_MAX_PASSWORD = 1024
_MAX_CODE = 64


class InvalidAdminCredentials(NotAuthenticated):
    """The email, admin password or code is wrong."""

    code = "invalid_credentials"


@dataclass(frozen=True)
class AdminPolicy:
    session_idle: timedelta = timedelta(minutes=30)
    session_absolute: timedelta = timedelta(hours=8)
    login_per_account: tuple[RateLimit, ...] = (RateLimit(5, 900),)
    login_per_ip: tuple[RateLimit, ...] = (RateLimit(20, 900),)
    # The n-th consecutive lock lasts the n-th of these; the last repeats.
    lock_durations: tuple[timedelta, ...] = (
        timedelta(minutes=15),
        timedelta(hours=1),
        timedelta(hours=4),
        timedelta(hours=24),
    )
    # A session's idle expiry moves at most this often (one write per admin request is waste).
    touch_interval: timedelta = timedelta(seconds=60)
    # How long a promoted administrator's mailed enrolment link works.
    enrolment_ttl: timedelta = timedelta(hours=24)


@dataclass
class AdminDeps:
    identity: IdentityDeps  # storage, clock, mail, TOTP, secret box, the user-password hasher
    hasher: PasswordHasher  # the admin-password pepper purpose: never the user hasher
    tokens: AdminTokenIssuer
    policy: AdminPolicy = field(default_factory=AdminPolicy)
    recovery_code_key: bytes = field(repr=False, default=b"")


@dataclass(frozen=True)
class AdminLoginResult:
    token: str
    session: AdminSession
    principal: AdminPrincipal


def admin_totp_context(user_id: uuid.UUID) -> SecretContext:
    return SecretContext(table="platform_admins", row_id=str(user_id), purpose="admin_totp_secret")


def _looks_like_totp(code: str) -> bool:
    digits = code.strip().replace(" ", "")
    return len(digits) == 6 and digits.isascii() and digits.isdigit()


def _validated(email: str, admin_password: str, totp_code: str) -> None:
    for name, value, limit in (
        ("email", email, _MAX_EMAIL),
        ("admin_password", admin_password, _MAX_PASSWORD),
        ("totp_code", totp_code, _MAX_CODE),
    ):
        if not value.strip():
            raise InvalidInput(f"`{name}` must not be empty.", code="invalid_request", field=name)
        if len(value) > limit:
            raise InvalidInput(f"`{name}` is too long.", code="invalid_request", field=name)


@dataclass(frozen=True)
class _Reservation:
    account_refused: bool  # the account's allowance was used up before this attempt
    last_of_allowance: bool  # this attempt took the account's last allowed one
    ip_refused: bool


async def _reserve(deps: AdminDeps, address: str, ctx: RequestContext) -> _Reservation:
    """Count the attempt (atomically, one step) before anything is hashed."""
    policy = deps.policy
    account = tiers("admin-login-account", address, policy.login_per_account)
    per_ip = tiers("admin-login-ip", ctx.ip, policy.login_per_ip)
    decisions: Sequence[LimitDecision] = await deps.identity.limiter.hit_many(account + per_ip)
    mine, ip = decisions[: len(account)], decisions[len(account) :]
    return _Reservation(
        account_refused=any(not d.allowed for d in mine),
        last_of_allowance=any(d.allowed and d.remaining == 0 for d in mine),
        ip_refused=any(not d.allowed for d in ip),
    )


@dataclass
class AdminLogin:
    deps: AdminDeps

    async def __call__(
        self, email: str, admin_password: str, totp_code: str, ctx: RequestContext
    ) -> AdminLoginResult:
        _validated(email, admin_password, totp_code)
        deps, identity = self.deps, self.deps.identity
        address = normalise_email(email)
        reservation = await _reserve(deps, address, ctx)
        user, admin = await self._find(address)
        now = identity.clock.now()
        if user is None or admin is None:
            await deps.hasher.burn(admin_password)
            await self._fail(ctx, user, None, "not_an_admin" if user else "unknown_account")
        if reservation.account_refused or reservation.ip_refused or admin.is_locked(now):
            await deps.hasher.burn(admin_password)
            reason = (
                "locked"
                if admin.is_locked(now)
                else "account_limited"
                if reservation.account_refused
                else "ip_limited"
            )
            await self._fail(ctx, user, admin, reason, lock=reservation.account_refused)
        # Opened whatever the password turns out to be, so a right password takes no longer.
        secret = (await identity.secret_box.open(admin.totp_envelope, admin_totp_context(user.id))).decode()
        check = await deps.hasher.verify(admin_password, admin.password_hash, admin.pepper_version)
        if not check.valid:
            await self._fail(ctx, user, admin, "wrong_password", lock=reservation.last_of_allowance)
        if user.is_suspended:
            await self._fail(ctx, user, admin, "account_suspended", lock=False)
        async with identity.uow() as uow:
            method = await self._second_factor(uow, user, secret, totp_code)
            # The code is spent in the same transaction that starts the session.
            session = await self._start(uow, user, method, ctx) if method else None
        if session is None:
            await self._fail(ctx, user, admin, "wrong_code", lock=reservation.last_of_allowance)
        return await self._finish(user, session)

    async def _find(self, address: str) -> tuple[User | None, PlatformAdmin | None]:
        if has_control_characters(address):  # no account has one; PostgreSQL refuses a NUL
            return None, None
        async with self.deps.identity.uow(autocommit=True) as uow:
            user = await uow.users.get_by_email(address)
            admin = await uow.platform_admins.get(user.id) if user else None
        return user, admin

    async def _second_factor(self, uow: UnitOfWork, user: User, secret: str, code: str) -> str | None:
        identity = self.deps.identity
        now = identity.clock.now()
        if _looks_like_totp(code):
            step = identity.totp.matching_step(secret, code, now, after_step=None)
            # The step only moves forward: a code seen once (or an older one) never works again.
            if step is not None and await uow.platform_admins.advance_totp_step(user.id, step):
                return "totp"
            return None
        digest = recovery_code_hash(self.deps.recovery_code_key, user.id, code)
        if await uow.platform_admins.use_recovery_code(user.id, digest, now):
            return "recovery_code"
        return None

    async def _start(self, uow: UnitOfWork, user: User, method: str, ctx: RequestContext) -> AdminSession:
        policy = self.deps.policy
        now = self.deps.identity.clock.now()
        session = AdminSession(
            id=uuid.uuid4(),
            user_id=user.id,
            created_at=now,
            last_used_at=now,
            idle_expires_at=min(now + policy.session_idle, now + policy.session_absolute),
            absolute_expires_at=now + policy.session_absolute,
            ip=ctx.ip,
            user_agent=(ctx.user_agent or "")[:512] or None,
        )
        await uow.platform_admins.start_session(session)
        await uow.platform_admins.clear_lock(user.id)  # locks grow only while failures continue
        # A TOTP code (not a recovery code) proves the enrolled factor works: from now on the
        # administrator counts among the active ones.
        confirmed = method == "totp" and await uow.platform_admins.confirm_factor(user.id, now)
        await uow.audit.append(
            ctx.event(
                "admin.login.success",
                actor=user.id,
                actor_kind=ActorKind.ADMIN,
                target_type="admin_session",
                target_id=session.id,
                method=method,
                factor_confirmed=confirmed,
            )
        )
        await uow.commit()
        return session

    async def _finish(self, user: User, session: AdminSession) -> AdminLoginResult:
        deps, identity = self.deps, self.deps.identity
        now = session.created_at
        # A good login ends the run of failures: the next mistake starts a fresh count.
        for key, _ in tiers("admin-login-account", user.email, deps.policy.login_per_account):
            await identity.limiter.reset(key)
        token = deps.tokens.issue(user.id, session.id, now, session.absolute_expires_at)
        principal = AdminPrincipal(
            user.id, session.id, user.email, user.display_name, now, session.absolute_expires_at
        )
        return AdminLoginResult(token, session, principal)

    async def _fail(
        self,
        ctx: RequestContext,
        user: User | None,
        admin: PlatformAdmin | None,
        reason: str,
        *,
        lock: bool = False,
    ) -> NoReturn:
        """Audits the failure (and locks the account when asked), then refuses -- always alike."""
        identity = self.deps.identity
        now = identity.clock.now()
        locked_until: datetime | None = None
        async with identity.uow() as uow:
            await uow.audit.append(
                ctx.event(
                    "admin.login.failure",
                    target_type="user" if user else None,
                    target_id=user.id if user else None,
                    reason=reason,
                )
            )
            if lock and user is not None and admin is not None:
                duration = lock_duration(admin.lock_count, self.deps.policy.lock_durations)
                until = now + duration
                if await uow.platform_admins.lock(user.id, until, now):
                    locked_until = until
                    await uow.audit.append(
                        ctx.event(
                            "admin.locked",
                            target_type="user",
                            target_id=user.id,
                            until=until.isoformat(),
                            lock_number=admin.lock_count + 1,
                            lock_seconds=int(duration.total_seconds()),
                        )
                    )
            await uow.commit()
        if locked_until is not None and user is not None:
            await self._mail_lock(user, locked_until, ctx)
        raise InvalidAdminCredentials()

    async def _mail_lock(self, user: User, until: datetime, ctx: RequestContext) -> None:
        message = MailMessage(
            to=user.email,
            subject="Your Bulwark admin sign-in is locked",
            body=(
                "Admin sign-in for your account failed too often, so it is locked until "
                f"{until.strftime('%Y-%m-%d %H:%M UTC')} (the last attempt came from {ctx.ip}).\n\n"
                "If this was not you, someone is guessing your admin credentials: change your admin "
                "password and tell the other administrators. An administrator can lift the lock "
                "early with `bulwark admin unlock`.\n"
            ),
        )
        # The caller's answer must not change with the mail server's health.
        try:
            await self.deps.identity.mailer.send(message)
        except Exception:
            log.exception("could not mail the admin lock notice")


@dataclass
class AuthenticateAdmin:
    """The check on every admin request: a verified admin token whose session is live."""

    deps: AdminDeps

    async def __call__(self, token: str) -> AdminPrincipal:
        identity = self.deps.identity
        claims = self.deps.tokens.verify(token)
        now = identity.clock.now()
        async with identity.uow() as uow:
            session = await uow.platform_admins.get_session(claims.sid)
            if session is None or session.user_id != claims.sub or not session.is_live(now):
                raise InvalidAdminToken()
            user = await uow.users.get(claims.sub)
            admin = await uow.platform_admins.get(claims.sub)
            if user is None or admin is None or user.is_suspended:
                raise InvalidAdminToken()
            if now - session.last_used_at >= self.deps.policy.touch_interval:
                idle = session.idle_deadline(now, self.deps.policy.session_idle)
                if not await uow.platform_admins.touch_session(session.id, now, idle):
                    raise InvalidAdminToken()
                await uow.commit()
        return AdminPrincipal(
            user.id, session.id, user.email, user.display_name, claims.auth_time, session.absolute_expires_at
        )


@dataclass
class AdminLogout:
    deps: AdminDeps

    async def __call__(self, token: str | None, ctx: RequestContext) -> None:
        """Ends the session the token names; a missing or dead token leaves nothing to end."""
        if not token:
            return
        try:
            claims = self.deps.tokens.verify(token)
        except InvalidAdminToken:
            return
        identity = self.deps.identity
        async with identity.uow() as uow:
            session = await uow.platform_admins.get_session(claims.sid)
            if session is None or session.user_id != claims.sub:
                return
            if await uow.platform_admins.revoke_session(session.id, identity.clock.now(), "logout"):
                await uow.audit.append(
                    ctx.event(
                        "admin.logout",
                        actor=claims.sub,
                        actor_kind=ActorKind.ADMIN,
                        target_type="admin_session",
                        target_id=session.id,
                    )
                )
            await uow.commit()
