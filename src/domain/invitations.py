"""Invitations to join an organisation: single use, expiring, for one email address."""

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from domain.orgs import OrgRole


@dataclass
class Invitation:
    id: UUID
    org_id: UUID
    email: str
    org_role: OrgRole
    role_ids: tuple[UUID, ...]
    group_ids: tuple[UUID, ...]
    token_hash: str
    invited_by: UUID
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None = None
    accepted_by: UUID | None = None

    def usable(self, now: datetime) -> bool:
        return self.accepted_at is None and now < self.expires_at


def invitation_token(org_id: UUID, secret: str) -> str:
    """The mailed token names its org, so acceptance can declare the org to row-level security
    before looking the invitation up; the secret part is what proves possession."""
    return f"{org_id}.{secret}"


def split_invitation_token(token: str) -> tuple[UUID, str] | None:
    org_part, sep, secret = token.partition(".")
    if not sep or not secret:
        return None
    try:
        return UUID(org_part), secret
    except ValueError:
        return None
