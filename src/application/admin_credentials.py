"""What every way of giving an administrator credentials shares (the operator's `bulwark admin
create` and `reset-factor`, the enrolment link): the admin password is never the user password,
and a new TOTP factor comes with new recovery codes, shown once."""

import uuid
from dataclasses import dataclass

from application.errors import InvalidInput
from application.identity import IdentityDeps
from application.use_cases.admin_login import AdminDeps, admin_totp_context
from application.use_cases.session_tokens import tiers
from application.use_cases.two_factor import new_recovery_code, recovery_code_hash
from domain.mfa import RECOVERY_CODE_COUNT
from domain.users import User


class AdminPasswordReused(InvalidInput):
    """The admin password must differ from the account's own password."""

    code = "admin_password_reused"


async def refuse_user_password(identity: IdentityDeps, user: User, admin_password: str) -> None:
    """The one comparison with the user password: refusing reuse needs a check of the candidate
    against the account's own hash (the admin hash is of another pepper purpose anyway)."""
    if (await identity.hasher.verify(admin_password, user.password_hash, user.pepper_version)).valid:
        raise AdminPasswordReused()


@dataclass(frozen=True)
class NewAdminFactor:
    totp_envelope: bytes  # sealed to the admin's row: the only form the secret is stored in
    otpauth_uri: str  # shown once
    recovery_codes: list[str]  # shown once
    recovery_code_hashes: list[str]  # stored


async def new_admin_factor(
    identity: IdentityDeps, recovery_code_key: bytes, user_id: uuid.UUID, email: str
) -> NewAdminFactor:
    """Call it before opening the unit of work: the secret box may write a data key of its own."""
    secret = identity.totp.new_secret()
    envelope = await identity.secret_box.seal(secret.encode(), admin_totp_context(user_id))
    codes = [new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    uri = identity.totp.provisioning_uri(secret, email, f"{identity.policy.totp_issuer} Admin")
    return NewAdminFactor(
        envelope, uri, codes, [recovery_code_hash(recovery_code_key, user_id, c) for c in codes]
    )


async def forget_login_failures(deps: AdminDeps, email: str) -> None:
    """Clear the admin-login limiter's windows, so the next attempt after an unlock is counted
    afresh rather than locking again at once."""
    for key, _ in tiers("admin-login-account", email, deps.policy.login_per_account):
        await deps.identity.limiter.reset(key)
