"""When a refresh token may be rotated: the rule the storage applies inside its rotation
(PostgreSQL does the read and the rotation in one statement). The refresh use case checks the
same conditions one by one afterwards, to answer each refusal with its own error."""

from datetime import datetime

from domain.orgs import Organisation
from domain.sessions import Session
from domain.users import User


def may_rotate(
    session: Session, user: User, org: Organisation, has_second_factor: bool, now: datetime
) -> bool:
    """A live session of a user who is not suspended, in an org that is not disabled and whose
    two-factor requirement the user meets. Anything else must not touch (extend) the session."""
    return (
        session.is_live(now)
        and not user.is_suspended
        and not org.is_disabled
        and (has_second_factor or not org.require_2fa)
    )
