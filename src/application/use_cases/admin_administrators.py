"""Administrators managed from the admin panel: list, promote (a pending administrator and a
mailed enrolment link), demote, unlock. Every change is audited with the acting administrator,
the target and the state before and after; demotion never takes the last active administrator."""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from application.admin_credentials import forget_login_failures
from application.errors import Conflict, InvalidInput, NotFound
from application.identity import RequestContext
from application.platform_admin_guard import keep_an_admin, refuse_self, still_an_admin
from application.ports.mailer import MailMessage
from application.ports.unit_of_work import UnitOfWork
from application.use_cases.accounts import validated_email
from application.use_cases.admin_login import AdminDeps, AdminPrincipal
from application.use_cases.session_tokens import new_secret_token
from domain.audit import ActorKind, AuditEvent
from domain.one_time_tokens import OneTimeToken, TokenPurpose
from domain.platform_admins import PendingAdmin, PlatformAdmin
from domain.sessions import token_digest
from domain.users import User, UserStatus

log = logging.getLogger("bulwark.admin")


@dataclass(frozen=True)
class AdministratorView:
    user_id: uuid.UUID
    email: str
    display_name: str
    # pending: promoted, no credentials yet; enrolled: credentials set, the factor not yet
    # confirmed by a TOTP login; active: confirmed (only these count for the last-admin rule).
    state: str
    account_status: str
    created_at: datetime
    factor_confirmed_at: datetime | None = None
    locked_until: datetime | None = None  # None unless locked now
    enrolment_expires_at: datetime | None = None  # pending only


def admin_state(admin: PlatformAdmin | None) -> str:
    if admin is None:
        return "none"
    return "active" if admin.factor_confirmed_at is not None else "enrolled"


def _audited(
    principal: AdminPrincipal, ctx: RequestContext, action: str, target: uuid.UUID, **details: Any
) -> AuditEvent:
    return ctx.event(
        action,
        actor=principal.user_id,
        actor_kind=ActorKind.ADMIN,
        target_type="user",
        target_id=target,
        admin_session=principal.session_id,
        **details,
    )


async def _still_admin(uow: UnitOfWork, principal: AdminPrincipal) -> None:
    await still_an_admin(uow, principal.user_id)


@dataclass
class ListAdministrators:
    deps: AdminDeps

    async def __call__(self, principal: AdminPrincipal) -> list[AdministratorView]:
        now = self.deps.identity.clock.now()
        views: list[AdministratorView] = []
        async with self.deps.identity.uow() as uow:
            for admin in await uow.platform_admins.all():
                user = await uow.users.get(admin.user_id)
                if user is not None:
                    views.append(
                        AdministratorView(
                            user.id,
                            user.email,
                            user.display_name,
                            admin_state(admin),
                            str(user.status),
                            admin.created_at,
                            admin.factor_confirmed_at,
                            admin.locked_until if admin.is_locked(now) else None,
                        )
                    )
            for pending in await uow.platform_admins.all_pending():
                user = await uow.users.get(pending.user_id)
                if user is not None:
                    views.append(
                        AdministratorView(
                            user.id,
                            user.email,
                            user.display_name,
                            "pending",
                            str(user.status),
                            pending.created_at,
                            enrolment_expires_at=pending.expires_at,
                        )
                    )
        return views


@dataclass
class PromoteAdministrator:
    """Promotion makes a pending administrator (no credentials, no login, not counted) and mails
    a one-time enrolment link; only the link's hash is stored."""

    deps: AdminDeps

    async def __call__(
        self, principal: AdminPrincipal, user_id: uuid.UUID | None, email: str | None, ctx: RequestContext
    ) -> AdministratorView:
        if (user_id is None) == (email is None):
            raise InvalidInput("Give exactly one of `user_id` and `email`.", code="invalid_request")
        identity = self.deps.identity
        now = identity.clock.now()
        expires_at = now + self.deps.policy.enrolment_ttl
        raw = new_secret_token()
        async with identity.uow() as uow:
            await _still_admin(uow, principal)
            user = await self._user(uow, user_id, email)
            if await uow.platform_admins.get(user.id) is not None:
                raise Conflict("This account is a platform administrator already.", code="already_admin")
            previous = await uow.platform_admins.get_pending(user.id)
            if previous is not None:
                if not previous.is_expired(now):
                    raise Conflict("This account's promotion is pending already.", code="already_admin")
                await uow.platform_admins.remove_pending(user.id)  # an expired link: promote afresh
            await uow.one_time_tokens.invalidate_for_user(user.id, TokenPurpose.ADMIN_ENROLMENT, now)
            await uow.one_time_tokens.add(
                OneTimeToken(token_digest(raw), user.id, TokenPurpose.ADMIN_ENROLMENT, now, expires_at)
            )
            pending = PendingAdmin(user.id, principal.user_id, now, expires_at)
            await uow.platform_admins.add_pending(pending)
            await uow.audit.append(
                _audited(
                    principal,
                    ctx,
                    "admin.promoted",
                    user.id,
                    before={"admin": "none"},
                    after={"admin": "pending", "enrolment_expires_at": expires_at.isoformat()},
                )
            )
            await uow.commit()
        await self._mail(user, raw, expires_at)
        return AdministratorView(
            user.id,
            user.email,
            user.display_name,
            "pending",
            str(user.status),
            now,
            enrolment_expires_at=expires_at,
        )

    @staticmethod
    async def _user(uow: UnitOfWork, user_id: uuid.UUID | None, email: str | None) -> User:
        user = await uow.users.get(user_id) if user_id is not None else None
        if email is not None:
            user = await uow.users.get_by_email(validated_email(email))
        if user is None:
            raise NotFound("No account has that id or email address.", code="user_not_found")
        if user.status is not UserStatus.ACTIVE:
            raise Conflict("Only an active account can be promoted.", code="account_not_active")
        return user

    async def _mail(self, user: User, raw_token: str, expires_at: datetime) -> None:
        identity = self.deps.identity
        link = f"{identity.policy.frontend_url.rstrip('/')}/admin/enrolment?token={raw_token}"
        message = MailMessage(
            to=user.email,
            subject="You were made a Bulwark platform administrator",
            body=(
                "A platform administrator promoted your account. Set your admin password and your "
                f"admin authenticator by opening this link (once, before "
                f"{expires_at.strftime('%Y-%m-%d %H:%M UTC')}):\n{link}\n\n"
                "The admin password must differ from your account password. If you did not expect "
                "this, tell the other administrators.\n"
            ),
        )
        try:  # the promotion stands; a lost mail is fixed by demoting and promoting again
            await identity.mailer.send(message)
        except Exception:
            log.exception("could not mail the admin enrolment link")


@dataclass
class DemoteAdministrator:
    """Removes the administrator (their recovery codes and admin sessions go at once), or cancels
    a pending promotion. Never oneself, never the last active administrator."""

    deps: AdminDeps

    async def __call__(self, principal: AdminPrincipal, user_id: uuid.UUID, ctx: RequestContext) -> None:
        refuse_self(principal.user_id, user_id, "demote")
        identity = self.deps.identity
        now = identity.clock.now()
        async with identity.uow() as uow:
            # The guard takes the admin set's lock first: two administrators demoting each other
            # at once are serialised here, and the second sees the first's demotion.
            await keep_an_admin(uow, user_id)
            await _still_admin(uow, principal)
            admin = await uow.platform_admins.get(user_id)
            if admin is not None:
                await uow.platform_admins.remove(user_id)
                await uow.one_time_tokens.invalidate_for_user(user_id, TokenPurpose.ADMIN_ENROLMENT, now)
                event = _audited(
                    principal,
                    ctx,
                    "admin.demoted",
                    user_id,
                    before={"admin": admin_state(admin)},
                    after={"admin": "none"},
                    admin_sessions_revoked=True,
                )
            elif await uow.platform_admins.remove_pending(user_id):
                await uow.one_time_tokens.invalidate_for_user(user_id, TokenPurpose.ADMIN_ENROLMENT, now)
                event = _audited(
                    principal,
                    ctx,
                    "admin.promotion_cancelled",
                    user_id,
                    before={"admin": "pending"},
                    after={"admin": "none"},
                )
            else:
                raise NotFound("No platform administrator has that id.", code="admin_not_found")
            await uow.audit.append(event)
            await uow.commit()


@dataclass
class UnlockAdministrator:
    deps: AdminDeps

    async def __call__(self, principal: AdminPrincipal, user_id: uuid.UUID, ctx: RequestContext) -> bool:
        """True when a lock was lifted."""
        identity = self.deps.identity
        now = identity.clock.now()
        async with identity.uow() as uow:
            await _still_admin(uow, principal)
            admin = await uow.platform_admins.get(user_id)
            user = await uow.users.get(user_id)
            if admin is None or user is None:
                raise NotFound("No platform administrator has that id.", code="admin_not_found")
            was_locked = admin.is_locked(now)
            lifted = await uow.platform_admins.clear_lock(user_id)
            await uow.audit.append(
                _audited(
                    principal,
                    ctx,
                    "admin.unlocked",
                    user_id,
                    before={
                        "locked_until": admin.locked_until.isoformat()
                        if was_locked and admin.locked_until
                        else None,
                        "lock_count": admin.lock_count,
                    },
                    after={"locked_until": None, "lock_count": 0},
                )
            )
            await uow.commit()
        await forget_login_failures(self.deps, user.email)
        return lifted and was_locked
