"""Organisations (tenants) and who belongs to them."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID


class OrgRole(StrEnum):
    MEMBER = "member"
    ADMINISTRATOR = "administrator"


class OrgStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


@dataclass
class Organisation:
    id: UUID
    name: str
    created_at: datetime
    personal: bool = False
    status: OrgStatus = OrgStatus.ACTIVE
    require_2fa: bool = False
    # An SSO sign-in whose id_token says the provider did MFA (`amr` contains `mfa`) may skip
    # our own second factor. Off by default: the provider's word is trusted only when asked.
    trust_sso_mfa: bool = False

    @property
    def is_disabled(self) -> bool:
        return self.status is OrgStatus.DISABLED


@dataclass
class Membership:
    org_id: UUID
    user_id: UUID
    role: OrgRole
    created_at: datetime
