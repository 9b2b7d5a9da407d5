"""The step between a correct password and a second factor."""

from dataclasses import dataclass

from application.identity import IdentityDeps, RequestContext
from application.ports.unit_of_work import UnitOfWork
from application.use_cases.session_tokens import new_secret_token
from domain.mfa import MfaChallenge
from domain.sessions import token_digest
from domain.users import User


@dataclass(frozen=True)
class MfaRequired:
    mfa_token: str
    methods: tuple[str, ...] = ("totp", "recovery_code")


async def begin_mfa_challenge(
    deps: IdentityDeps, uow: UnitOfWork, user: User, ctx: RequestContext
) -> MfaRequired:
    """After a correct password for a 2FA account: a short-lived, single-purpose token (not a JWT,
    so it can never pass as a bearer token), bound to this user."""
    now = deps.clock.now()
    raw = new_secret_token()
    await uow.mfa.add_challenge(
        MfaChallenge(token_digest(raw), user.id, now, now + deps.policy.mfa_token_ttl)
    )
    await uow.audit.append(
        ctx.event("login.mfa_required", actor=user.id, target_type="user", target_id=user.id)
    )
    return MfaRequired(mfa_token=raw)
