"""Operator commands for platform administrators: promote (bootstrap), list, unlock."""

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from application.admin_credentials import forget_login_failures, new_admin_factor, refuse_user_password
from application.errors import Conflict, NotFound
from application.identity import RequestContext
from application.ports.unit_of_work import UnitOfWork
from application.use_cases.accounts import enforce_password_policy, validated_email
from application.use_cases.admin_login import AdminDeps
from domain.audit import ActorKind
from domain.orgs import Membership, Organisation, OrgRole
from domain.permissions import SYSTEM_ROLE_IDS, SystemRole
from domain.platform_admins import PlatformAdmin
from domain.users import User

CLI_CONTEXT = RequestContext(ip="cli", user_agent="bulwark-cli")


@dataclass(frozen=True)
class AdminEnrolment:
    """Shown once, to the operator who ran the promotion; only hashes and a sealed secret stay."""

    user_id: uuid.UUID
    otpauth_uri: str
    recovery_codes: list[str]
    created_account: bool


@dataclass(frozen=True)
class AdminListing:
    user_id: uuid.UUID
    email: str
    created_at: datetime
    locked_until: datetime | None  # None unless locked now


@dataclass
class CreatePlatformAdmin:
    deps: AdminDeps

    async def __call__(
        self, email: str, admin_password: str, ctx: RequestContext = CLI_CONTEXT
    ) -> AdminEnrolment:
        deps, identity = self.deps, self.deps.identity
        address = validated_email(email)
        enforce_password_policy(identity, admin_password, address, "admin_password")
        async with identity.uow(autocommit=True) as uow:
            existing = await uow.users.get_by_email(address)
            if existing is not None and await uow.platform_admins.get(existing.id) is not None:
                raise Conflict("This account is a platform administrator already.", code="already_admin")
        if existing is not None:
            await refuse_user_password(identity, existing, admin_password)
        now = identity.clock.now()
        user_id = existing.id if existing is not None else uuid.uuid4()
        password_hash, pepper_version = await deps.hasher.hash(admin_password)
        factor = await new_admin_factor(identity, deps.recovery_code_key, user_id, address)
        new_user = None if existing is not None else await self._new_user(user_id, address, now)
        async with identity.uow() as uow:
            if new_user is not None:
                await self._add_user(uow, new_user, now)
            # The operator on the server saw the factor set up: it counts as confirmed.
            await uow.platform_admins.add(
                PlatformAdmin(
                    user_id,
                    password_hash,
                    pepper_version,
                    factor.totp_envelope,
                    created_at=now,
                    factor_confirmed_at=now,
                )
            )
            await uow.platform_admins.replace_recovery_codes(user_id, factor.recovery_code_hashes, now)
            await uow.audit.append(
                ctx.event(
                    "admin.created",
                    actor_kind=ActorKind.SYSTEM,
                    target_type="user",
                    target_id=user_id,
                    created_account=new_user is not None,
                )
            )
            await uow.commit()
        return AdminEnrolment(
            user_id, factor.otpauth_uri, factor.recovery_codes, created_account=new_user is not None
        )

    async def _new_user(self, user_id: uuid.UUID, address: str, now: datetime) -> User:
        """A verified account nobody knows the user password of: its owner sets one by the
        forgot-password mail, and the admin password can never be that password by accident."""
        unknown_hash, pepper_version = await self.deps.identity.hasher.hash(secrets.token_urlsafe(32))
        return User(
            id=user_id,
            email=address,
            display_name=address.split("@", 1)[0][:200],
            password_hash=unknown_hash,
            pepper_version=pepper_version,
            created_at=now,
            email_verified_at=now,
        )

    async def _add_user(self, uow: UnitOfWork, user: User, now: datetime) -> None:
        """As a registration makes it: a personal organisation the user administers."""
        org = Organisation(
            id=uuid.uuid4(), name=f"{user.display_name}'s organisation", created_at=now, personal=True
        )
        user.default_org_id = org.id
        await uow.orgs.add(org)
        await uow.users.add(user)
        await uow.orgs.add_membership(Membership(org.id, user.id, OrgRole.ADMINISTRATOR, now))
        await uow.authz.assign_member_role(org.id, user.id, SYSTEM_ROLE_IDS[SystemRole.ADMINISTRATOR], now)
        await uow.audit.append(
            CLI_CONTEXT.event(
                "user.registered",
                actor_kind=ActorKind.SYSTEM,
                org=org.id,
                target_type="user",
                target_id=user.id,
                via="admin_create",
            )
        )


@dataclass
class ListPlatformAdmins:
    deps: AdminDeps

    async def __call__(self) -> list[AdminListing]:
        now = self.deps.identity.clock.now()
        async with self.deps.identity.uow() as uow:
            listing = []
            for admin in await uow.platform_admins.all():
                user = await uow.users.get(admin.user_id)
                if user is not None:
                    until = admin.locked_until if admin.is_locked(now) else None
                    listing.append(AdminListing(user.id, user.email, admin.created_at, until))
        return listing


@dataclass
class UnlockPlatformAdmin:
    deps: AdminDeps

    async def __call__(self, email: str, ctx: RequestContext = CLI_CONTEXT) -> bool:
        """True when a lock was lifted. The limiter's windows are cleared too, so the next
        attempt is counted afresh rather than locking again at once."""
        identity = self.deps.identity
        address = validated_email(email)
        async with identity.uow() as uow:
            user = await uow.users.get_by_email(address)
            if user is None or await uow.platform_admins.get(user.id) is None:
                raise NotFound("No platform administrator has that email address.")
            lifted = await uow.platform_admins.clear_lock(user.id)
            await uow.audit.append(
                ctx.event(
                    "admin.unlocked", actor_kind=ActorKind.SYSTEM, target_type="user", target_id=user.id
                )
            )
            await uow.commit()
        await forget_login_failures(self.deps, address)
        return lifted


@dataclass
class ResetAdminFactor:
    """The recovery path when an administrator (the last one, say) lost their TOTP factor and
    recovery codes: on the server only. A new factor and new codes, shown once; the lock lifted;
    their admin sessions ended (whoever holds the old factor is out). The admin password stays."""

    deps: AdminDeps

    async def __call__(self, email: str, ctx: RequestContext = CLI_CONTEXT) -> AdminEnrolment:
        identity = self.deps.identity
        address = validated_email(email)
        async with identity.uow(autocommit=True) as uow:
            user = await uow.users.get_by_email(address)
            admin = await uow.platform_admins.get(user.id) if user is not None else None
        if user is None or admin is None:
            raise NotFound("No platform administrator has that email address.")
        factor = await new_admin_factor(identity, self.deps.recovery_code_key, user.id, user.email)
        now = identity.clock.now()
        async with identity.uow() as uow:
            await uow.platform_admins.replace_factor(user.id, factor.totp_envelope, now)
            await uow.platform_admins.replace_recovery_codes(user.id, factor.recovery_code_hashes, now)
            revoked = await uow.platform_admins.revoke_sessions_of(user.id, now, "factor_reset")
            await uow.audit.append(
                ctx.event(
                    "admin.factor_reset",
                    actor_kind=ActorKind.SYSTEM,
                    target_type="user",
                    target_id=user.id,
                    via="cli",
                    before={
                        "factor_confirmed_at": (
                            admin.factor_confirmed_at.isoformat() if admin.factor_confirmed_at else None
                        ),
                        "locked_until": admin.locked_until.isoformat() if admin.locked_until else None,
                        "lock_count": admin.lock_count,
                    },
                    after={"factor_confirmed_at": now.isoformat(), "locked_until": None, "lock_count": 0},
                    admin_sessions_revoked=revoked,
                )
            )
            await uow.commit()
        await forget_login_failures(self.deps, user.email)
        return AdminEnrolment(user.id, factor.otpauth_uri, factor.recovery_codes, created_account=False)
