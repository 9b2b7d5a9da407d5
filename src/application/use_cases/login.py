"""Password login: limits first, then the same hashing work whether or not the account exists."""

import uuid
from dataclasses import dataclass
from uuid import UUID

from application.errors import Forbidden, NotAuthenticated
from application.identity import IdentityDeps, RequestContext
from application.ports.token_issuer import IssuedToken
from application.ports.unit_of_work import UnitOfWork
from application.use_cases.mfa_challenge import MfaRequired, begin_mfa_challenge
from application.use_cases.session_tokens import enforce_limits, new_secret_token, tiers
from domain.orgs import Organisation
from domain.sessions import RefreshToken, Session, token_digest
from domain.text_rules import has_control_characters
from domain.users import User, normalise_email


class InvalidCredentials(NotAuthenticated):
    """The email or password is wrong."""

    code = "invalid_credentials"


@dataclass(frozen=True)
class LoginResult:
    access: IssuedToken
    refresh_token: str
    user: User
    session: Session


async def has_second_factor(uow: UnitOfWork, user_id: UUID) -> bool:
    credential = await uow.mfa.get_totp(user_id)
    return credential is not None and credential.enabled


def require_second_factor_for(org: Organisation) -> Forbidden:
    return Forbidden(
        f"{org.name} requires two-factor authentication: turn it on first.", code="two_factor_required"
    )


async def active_org_for(uow: UnitOfWork, user: User) -> Organisation:
    """The user's default organisation if it is active, else their first active one -- among
    those whose two-factor requirement the user meets (without 2FA they can still sign in to an
    org that does not require it, and turn 2FA on there)."""
    active = [org for _, org in await uow.orgs.memberships_of(user.id) if not org.is_disabled]
    if not active:
        raise Forbidden("None of your organisations is active.", code="org_disabled")
    candidates = active
    if any(org.require_2fa for org in active) and not await has_second_factor(uow, user.id):
        candidates = [org for org in active if not org.require_2fa]
        if not candidates:
            raise require_second_factor_for(active[0])
    for org in candidates:
        if org.id == user.default_org_id:
            return org
    return candidates[0]


async def start_session(
    deps: IdentityDeps, uow: UnitOfWork, user: User, org: Organisation, ctx: RequestContext
) -> tuple[Session, str]:
    now = deps.clock.now()
    session = Session(
        id=uuid.uuid4(),
        user_id=user.id,
        org_id=org.id,
        created_at=now,
        last_used_at=now,
        auth_time=now,
        idle_expires_at=min(now + deps.policy.session_idle, now + deps.policy.session_absolute),
        absolute_expires_at=now + deps.policy.session_absolute,
        ip=ctx.ip,
        user_agent=(ctx.user_agent or "")[:512] or None,
    )
    raw = new_secret_token()
    await uow.sessions.start(session, RefreshToken(token_digest(raw), session.id, now))
    return session, raw


@dataclass
class Login:
    deps: IdentityDeps

    async def __call__(self, email: str, password: str, ctx: RequestContext) -> LoginResult | MfaRequired:
        deps = self.deps
        address = normalise_email(email)
        await enforce_limits(
            deps,
            ctx,
            tiers("login-ip", ctx.ip, deps.policy.login_per_ip)
            + tiers("login-account", address, deps.policy.login_per_account),
        )
        # The password is checked with no connection held: a login storm must not drain the
        # pool that every other request needs while argon2 runs.
        found = None
        if not has_control_characters(address):  # no account has one; PostgreSQL refuses a NUL
            async with deps.uow(autocommit=True) as uow:
                found = await uow.users.get_by_email(address)
        if found is None:
            await deps.hasher.burn(password)
            await self._fail(ctx, None, "unknown_email")
            raise InvalidCredentials()
        check = await deps.hasher.verify(password, found.password_hash, found.pepper_version)
        if not check.valid:
            await self._fail(ctx, found, "wrong_password")
            raise InvalidCredentials()
        upgraded = await deps.hasher.hash(password) if check.needs_rehash else None
        async with deps.uow() as uow:
            user = await uow.users.get(found.id)
            if user is None or user.password_hash != found.password_hash:
                raise InvalidCredentials()  # changed while we hashed: the check no longer holds
            if upgraded is not None:
                user.password_hash, user.pepper_version = upgraded
                await uow.users.update(user)
            if user.is_paused:
                await self._fail_in(uow, ctx, user, "account_paused")
                raise Forbidden(
                    "This account is paused by the platform's administrators.", code="account_paused"
                )
            if user.is_suspended:
                await self._fail_in(uow, ctx, user, "account_suspended")
                raise Forbidden("This account is suspended.", code="account_suspended")
            if not user.is_verified:
                await self._fail_in(uow, ctx, user, "email_not_verified")
                raise Forbidden("Verify your email address before logging in.", code="email_not_verified")
            org = await active_org_for(uow, user)
            totp = await uow.mfa.get_totp(user.id)
            if totp is not None and totp.enabled:
                challenge = await begin_mfa_challenge(deps, uow, user, ctx)
                await uow.commit()
                return challenge
            session, raw = await start_session(deps, uow, user, org, ctx)
            await uow.audit.append(
                ctx.event(
                    "login.success", actor=user.id, org=org.id, target_type="session", target_id=session.id
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

    async def _fail(self, ctx: RequestContext, user: User | None, reason: str) -> None:
        async with self.deps.uow() as uow:
            await self._fail_in(uow, ctx, user, reason)

    async def _fail_in(self, uow: UnitOfWork, ctx: RequestContext, user: User | None, reason: str) -> None:
        await uow.audit.append(
            ctx.event(
                "login.failure",
                target_type="user" if user else None,
                target_id=user.id if user else None,
                reason=reason,
            )
        )
        await uow.commit()
