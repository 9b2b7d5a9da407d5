"""Changing a password, and resetting a forgotten one by mail."""

import logging
from dataclasses import dataclass

from application.errors import InvalidInput, NotAuthenticated
from application.identity import IdentityDeps, RequestContext
from application.ports.mailer import MailMessage
from application.use_cases.accounts import enforce_password_policy, issue_one_time_token, send_mail
from application.use_cases.session_tokens import enforce_limits, limit_mail_requests, revoke_in_store, tiers
from application.use_cases.sessions import Principal
from domain.one_time_tokens import TokenPurpose
from domain.sessions import token_digest
from domain.text_rules import has_control_characters
from domain.users import normalise_email

log = logging.getLogger("bulwark.identity")


class WrongPassword(NotAuthenticated):
    """The current password is wrong."""

    code = "invalid_credentials"


@dataclass
class ChangePassword:
    deps: IdentityDeps

    async def __call__(
        self, principal: Principal, current_password: str, new_password: str, ctx: RequestContext
    ) -> None:
        deps = self.deps
        await enforce_limits(
            deps, ctx, tiers("password-change", principal.user_id, deps.policy.login_per_account)
        )
        now = deps.clock.now()
        async with deps.uow() as uow:
            user = await uow.users.get(principal.user_id)
            if user is None:
                raise NotAuthenticated()
            check = await deps.hasher.verify(current_password, user.password_hash, user.pepper_version)
            if not check.valid:
                await uow.audit.append(
                    ctx.event(
                        "password.change_failed",
                        actor=user.id,
                        org=principal.org_id,
                        target_type="user",
                        target_id=user.id,
                    )
                )
                await uow.commit()
                raise WrongPassword()
            enforce_password_policy(deps, new_password, user.email, "new_password")
            user.password_hash, user.pepper_version = await deps.hasher.hash(new_password)
            user.updated_at = now
            await uow.users.update(user)
            await uow.mfa.drop_challenges(user.id)  # a pending sign-in step dies with the old password
            ids = await uow.sessions.revoke_all_for_user(
                user.id, now, "password_changed", except_session=principal.session_id
            )
            await uow.audit.append(
                ctx.event(
                    "password.changed",
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
class ForgotPassword:
    deps: IdentityDeps

    async def __call__(self, email: str, ctx: RequestContext) -> None:
        deps = self.deps
        address = normalise_email(email)
        await limit_mail_requests(deps, ctx, address)
        if has_control_characters(address):  # no account has one; PostgreSQL refuses a NUL
            return
        async with deps.uow() as uow:
            user = await uow.users.get_by_email(address)
            if user is None or user.is_suspended:
                return
            raw = await issue_one_time_token(deps, uow, user.id, TokenPurpose.RESET_PASSWORD)
            await uow.audit.append(
                ctx.event("password.reset_requested", target_type="user", target_id=user.id)
            )
            await uow.commit()
        link = f"{deps.policy.frontend_url.rstrip('/')}/reset-password?token={raw}"
        minutes = int(deps.policy.reset_password_ttl.total_seconds() // 60)
        await send_mail(
            deps,
            MailMessage(
                to=user.email,
                subject="Reset your Bulwark password",
                body=f"Someone asked to reset the password of your Bulwark account.\n\n"
                f"To choose a new password, open this link:\n{link}\n\n"
                f"The link works once and expires in {minutes} minutes. If you did not ask for this, "
                "ignore this message; your password has not changed.\n",
            ),
        )


@dataclass
class ResetPassword:
    deps: IdentityDeps

    async def __call__(self, raw_token: str, new_password: str, ctx: RequestContext) -> None:
        deps = self.deps
        now = deps.clock.now()
        invalid = InvalidInput(
            "This link is invalid or has expired.", code="invalid_or_expired_token", field="token"
        )
        async with deps.uow() as uow:
            token = await uow.one_time_tokens.get(token_digest(raw_token))
            if token is None or token.purpose is not TokenPurpose.RESET_PASSWORD or not token.usable(now):
                raise invalid
            user = await uow.users.get(token.user_id)
            if user is None:
                raise invalid
            # Policy before consuming, so a weak choice does not burn the link.
            enforce_password_policy(deps, new_password, user.email, "new_password")
            if not await uow.one_time_tokens.consume(token.token_hash, now):
                raise invalid
            user.password_hash, user.pepper_version = await deps.hasher.hash(new_password)
            user.updated_at = now
            if user.email_verified_at is None:
                user.email_verified_at = now  # the mailed link proves the address
            await uow.users.update(user)
            await uow.mfa.drop_challenges(user.id)  # a pending sign-in step dies with the old password
            ids = await uow.sessions.revoke_all_for_user(user.id, now, "password_reset")
            await uow.audit.append(
                ctx.event(
                    "password.reset",
                    actor=user.id,
                    target_type="user",
                    target_id=user.id,
                    sessions_revoked=len(ids),
                )
            )
            await uow.commit()
        deps.profiles.forget_user(user.id)
        await revoke_in_store(deps, ids, now + deps.policy.session_absolute)
        try:
            # Whole seconds, like a token's `iat`: a login right after the reset must stay valid.
            await deps.revocations.set_user_not_before(user.id, now.replace(microsecond=0))
        except Exception:
            log.warning("revocation store unavailable; sessions are revoked in the database only")
