"""Registration and email verification."""

import logging
import re
import uuid
from dataclasses import dataclass

from application.errors import Conflict, InvalidInput
from application.identity import IdentityDeps, RequestContext
from application.ports.mailer import MailMessage
from application.ports.unit_of_work import UnitOfWork
from application.text_input import validated_text
from application.use_cases.session_tokens import enforce_limits, limit_mail_requests, new_secret_token, tiers
from domain.one_time_tokens import OneTimeToken, TokenPurpose
from domain.orgs import Membership, Organisation, OrgRole
from domain.password_policy import check_password
from domain.permissions import SYSTEM_ROLE_IDS, SystemRole
from domain.sessions import token_digest
from domain.text_rules import email_problem, has_control_characters
from domain.users import User, normalise_email

log = logging.getLogger("bulwark.identity")
DISPLAY_NAME_MAX = 200
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


def validated_email(email: str) -> str:
    normalised = normalise_email(email)
    if len(normalised) > 320 or not _EMAIL.match(normalised):
        raise InvalidInput("That is not a valid email address.", code="invalid_email", field="email")
    problem = email_problem(normalised)
    if problem is not None:
        raise InvalidInput(f"That email address is refused: {problem}.", code="invalid_email", field="email")
    return normalised


def enforce_password_policy(deps: IdentityDeps, password: str, email: str, field: str) -> None:
    verdict = check_password(
        password,
        email=email,
        min_length=deps.policy.password_min_length,
        is_common=deps.is_common_password,
    )
    if not verdict.acceptable:
        raise InvalidInput(f"The password {verdict.reason}.", code="weak_password", field=field)


async def send_mail(deps: IdentityDeps, message: MailMessage) -> None:
    # A mail failure must not change the answer (that would reveal whether the address exists).
    try:
        await deps.mailer.send(message)
    except Exception:
        log.exception("could not send mail %r", message.subject)


async def issue_one_time_token(
    deps: IdentityDeps, uow: UnitOfWork, user_id: uuid.UUID, purpose: TokenPurpose
) -> str:
    """A fresh single-use token; earlier unused ones of the same purpose stop working."""
    now = deps.clock.now()
    ttl = (
        deps.policy.verify_email_ttl
        if purpose is TokenPurpose.VERIFY_EMAIL
        else deps.policy.reset_password_ttl
    )
    raw = new_secret_token()
    await uow.one_time_tokens.invalidate_for_user(user_id, purpose, now)
    await uow.one_time_tokens.add(OneTimeToken(token_digest(raw), user_id, purpose, now, now + ttl))
    return raw


def verification_mail(deps: IdentityDeps, email: str, raw_token: str) -> MailMessage:
    link = f"{deps.policy.frontend_url.rstrip('/')}/verify-email?token={raw_token}"
    hours = int(deps.policy.verify_email_ttl.total_seconds() // 3600)
    return MailMessage(
        to=email,
        subject="Verify your Bulwark email address",
        body=f"Welcome to Bulwark.\n\nConfirm your address by opening this link:\n{link}\n\n"
        f"The link works once and expires in {hours} hours.\n"
        "If you did not create an account, ignore this message.\n",
    )


@dataclass
class RegisterUser:
    deps: IdentityDeps

    async def __call__(self, email: str, password: str, display_name: str, ctx: RequestContext) -> None:
        deps = self.deps
        await enforce_limits(deps, ctx, tiers("register-ip", ctx.ip, deps.policy.register_per_ip))
        email = validated_email(email)
        display_name = validated_text(display_name, "display_name", "Display name", DISPLAY_NAME_MAX)
        enforce_password_policy(deps, password, email, "password")
        # Hash before looking the address up, so both branches cost the same.
        password_hash, pepper_version = await deps.hasher.hash(password)
        now = deps.clock.now()
        lost_race = False
        async with deps.uow() as uow:
            existing = await uow.users.get_by_email(email)
            if existing is None:
                org = Organisation(
                    id=uuid.uuid4(), name=f"{display_name}'s organisation", created_at=now, personal=True
                )
                user = User(
                    id=uuid.uuid4(),
                    email=email,
                    display_name=display_name,
                    password_hash=password_hash,
                    pepper_version=pepper_version,
                    created_at=now,
                    default_org_id=org.id,
                )
                await uow.orgs.add(org)
                try:
                    await uow.users.add(user)
                except Conflict:
                    # A concurrent registration won. Leave without committing, so this
                    # transaction's personal organisation is rolled back (and a failed statement
                    # has aborted it on PostgreSQL anyway); answer as for an existing address.
                    lost_race = True
                else:
                    await uow.orgs.add_membership(Membership(org.id, user.id, OrgRole.ADMINISTRATOR, now))
                    await uow.authz.assign_member_role(
                        org.id, user.id, SYSTEM_ROLE_IDS[SystemRole.ADMINISTRATOR], now
                    )
                    raw = await issue_one_time_token(deps, uow, user.id, TokenPurpose.VERIFY_EMAIL)
                    await uow.audit.append(
                        ctx.event(
                            "user.registered",
                            actor=user.id,
                            org=org.id,
                            target_type="user",
                            target_id=user.id,
                        )
                    )
                    await uow.commit()
                    await send_mail(deps, verification_mail(deps, email, raw))
                    return
            if existing is not None:
                await uow.audit.append(
                    ctx.event("user.register_existing", target_type="user", target_id=existing.id)
                )
                await uow.commit()
        if lost_race:
            async with deps.uow() as uow:
                winner = await uow.users.get_by_email(email)
                await uow.audit.append(
                    ctx.event(
                        "user.register_existing",
                        target_type="user",
                        target_id=winner.id if winner is not None else None,
                    )
                )
                await uow.commit()
        await send_mail(
            deps,
            MailMessage(
                to=email,
                subject="Someone tried to register with your address",
                body="Someone tried to create a Bulwark account with this email address, which already "
                "has an account.\nIf it was you, log in or reset your password instead. "
                "If not, you can ignore this message; nothing has changed.\n",
            ),
        )


@dataclass
class VerifyEmail:
    deps: IdentityDeps

    async def __call__(self, raw_token: str, ctx: RequestContext) -> None:
        now = self.deps.clock.now()
        async with self.deps.uow() as uow:
            token = await uow.one_time_tokens.get(token_digest(raw_token))
            if (
                token is None
                or token.purpose is not TokenPurpose.VERIFY_EMAIL
                or not token.usable(now)
                or not await uow.one_time_tokens.consume(token.token_hash, now)
            ):
                raise InvalidInput(
                    "This link is invalid or has expired.", code="invalid_or_expired_token", field="token"
                )
            user = await uow.users.get(token.user_id)
            if user is None:
                raise InvalidInput(
                    "This link is invalid or has expired.", code="invalid_or_expired_token", field="token"
                )
            if user.email_verified_at is None:
                user.email_verified_at = now
                user.updated_at = now
                await uow.users.update(user)
            await uow.audit.append(
                ctx.event("user.email_verified", actor=user.id, target_type="user", target_id=user.id)
            )
            await uow.commit()
        self.deps.profiles.forget_user(token.user_id)


@dataclass
class ResendVerification:
    deps: IdentityDeps

    async def __call__(self, email: str, ctx: RequestContext) -> None:
        deps = self.deps
        address = normalise_email(email)
        await limit_mail_requests(deps, ctx, address)
        if has_control_characters(address):  # no account has one; PostgreSQL refuses a NUL
            return
        async with deps.uow() as uow:
            user = await uow.users.get_by_email(address)
            if user is None or user.is_verified:
                return
            raw = await issue_one_time_token(deps, uow, user.id, TokenPurpose.VERIFY_EMAIL)
            await uow.audit.append(
                ctx.event("user.verification_resent", target_type="user", target_id=user.id)
            )
            await uow.commit()
        await send_mail(deps, verification_mail(deps, user.email, raw))
