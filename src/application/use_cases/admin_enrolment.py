"""A promoted administrator follows the mailed one-time link: sets the admin password (never the
account's own password) and receives the TOTP enrolment URI and recovery codes, once. The factor
counts as confirmed when a TOTP code first opens an admin session (see AdminLogin)."""

from dataclasses import dataclass

from application.admin_credentials import new_admin_factor, refuse_user_password
from application.errors import InvalidInput
from application.identity import RequestContext
from application.use_cases.accounts import enforce_password_policy
from application.use_cases.admin_login import AdminDeps
from application.use_cases.platform_admins import AdminEnrolment
from domain.audit import ActorKind
from domain.one_time_tokens import TokenPurpose
from domain.platform_admins import PlatformAdmin
from domain.sessions import token_digest
from domain.users import User

_MAX_TOKEN = 200


class InvalidEnrolmentLink(InvalidInput):
    code = "invalid_or_expired_token"

    def __init__(self) -> None:
        super().__init__("This link is invalid or has expired.", field="token")


@dataclass
class CompleteAdminEnrolment:
    deps: AdminDeps

    async def __call__(self, raw_token: str, admin_password: str, ctx: RequestContext) -> AdminEnrolment:
        deps, identity = self.deps, self.deps.identity
        if not raw_token or len(raw_token) > _MAX_TOKEN or not raw_token.isascii():
            raise InvalidEnrolmentLink()
        digest = token_digest(raw_token)
        user = await self._pending_user(digest)
        # Policy and reuse before consuming, so a refused choice does not burn the link.
        enforce_password_policy(identity, admin_password, user.email, "admin_password")
        await refuse_user_password(identity, user, admin_password)
        password_hash, pepper_version = await deps.hasher.hash(admin_password)
        factor = await new_admin_factor(identity, deps.recovery_code_key, user.id, user.email)
        now = identity.clock.now()
        async with identity.uow() as uow:
            # Both conditional: of two uses of one link at once exactly one gets through.
            if not await uow.one_time_tokens.consume(
                digest, now
            ) or not await uow.platform_admins.remove_pending(user.id):
                raise InvalidEnrolmentLink()
            await uow.platform_admins.add(
                PlatformAdmin(user.id, password_hash, pepper_version, factor.totp_envelope, created_at=now)
            )
            await uow.platform_admins.replace_recovery_codes(user.id, factor.recovery_code_hashes, now)
            await uow.audit.append(
                ctx.event(
                    "admin.enrolled",
                    actor=user.id,
                    actor_kind=ActorKind.ADMIN,
                    target_type="user",
                    target_id=user.id,
                    before={"admin": "pending"},
                    after={"admin": "enrolled"},
                )
            )
            await uow.commit()
        return AdminEnrolment(user.id, factor.otpauth_uri, factor.recovery_codes, created_account=False)

    async def _pending_user(self, digest: str) -> User:
        now = self.deps.identity.clock.now()
        async with self.deps.identity.uow() as uow:
            token = await uow.one_time_tokens.get(digest)
            if token is None or token.purpose is not TokenPurpose.ADMIN_ENROLMENT or not token.usable(now):
                raise InvalidEnrolmentLink()
            pending = await uow.platform_admins.get_pending(token.user_id)
            user = await uow.users.get(token.user_id)
        if pending is None or pending.is_expired(now) or user is None or user.is_suspended:
            raise InvalidEnrolmentLink()
        return user
