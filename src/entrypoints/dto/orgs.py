"""Bodies of the organisation, member, role, group, permission and audit endpoints."""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from entrypoints.dto.identity import OrgView, WriteBody

OrgRoleName = Literal["member", "administrator"]


class CreateOrgRequest(WriteBody):
    name: str


class UpdateOrgRequest(WriteBody):
    name: str | None = None
    require_2fa: bool | None = None
    # SSO sign-ins whose provider did MFA (`amr` contains `mfa`) skip our second factor.
    trust_sso_mfa: bool | None = None


class SwitchOrgRequest(WriteBody):
    org_id: UUID


class OrgDetail(msgspec.Struct):
    id: UUID
    name: str
    personal: bool
    status: str
    require_2fa: bool
    trust_sso_mfa: bool = False


class MyOrg(msgspec.Struct):
    org: OrgView
    role: str


class OrgList(msgspec.Struct):
    orgs: list[MyOrg]


class InviteRequest(WriteBody):
    email: str
    org_role: OrgRoleName = "member"
    role_ids: list[UUID] = msgspec.field(default_factory=list)
    group_ids: list[UUID] = msgspec.field(default_factory=list)


class InvitationView(msgspec.Struct):
    id: UUID
    email: str
    org_role: str
    role_ids: list[UUID]
    group_ids: list[UUID]
    expires_at: datetime


class AcceptInvitationRequest(WriteBody):
    token: str


class MemberView(msgspec.Struct):
    user_id: UUID
    email: str
    display_name: str
    org_role: str
    joined_at: datetime


class MemberList(msgspec.Struct):
    members: list[MemberView]


class UpdateMemberRequest(WriteBody):
    org_role: OrgRoleName


class RoleView(msgspec.Struct):
    id: UUID
    name: str
    description: str
    system: bool
    permissions: list[str]


class RoleList(msgspec.Struct):
    roles: list[RoleView]


class CreateRoleRequest(WriteBody):
    name: str
    permissions: list[str]
    description: str = ""


class UpdateRoleRequest(WriteBody):
    name: str | None = None
    description: str | None = None
    permissions: list[str] | None = None


class CreateGroupRequest(WriteBody):
    name: str
    description: str = ""


class UpdateGroupRequest(WriteBody):
    name: str | None = None
    description: str | None = None


class GroupView(msgspec.Struct):
    id: UUID
    name: str
    description: str
    created_at: datetime
    member_ids: list[UUID] | None = None
    role_ids: list[UUID] | None = None


class GroupList(msgspec.Struct):
    groups: list[GroupView]


class PermissionSource(msgspec.Struct):
    role_id: UUID
    role_name: str
    group_id: UUID | None
    group_name: str | None


class EffectivePermission(msgspec.Struct):
    permission: str
    sources: list[PermissionSource]


class MyPermissions(msgspec.Struct):
    org_id: UUID
    permissions: list[EffectivePermission]


class AuthzCheckRequest(WriteBody):
    permission: str | None = None
    permissions: list[str] | None = None


class AuthzCheckResponse(msgspec.Struct, omit_defaults=True):
    allowed: bool
    results: dict[str, bool] | None = None


class AuditEntry(msgspec.Struct):
    id: int
    occurred_at: datetime
    action: str
    actor_kind: str
    actor_user_id: UUID | None
    target_type: str | None
    target_id: str | None
    source_ip: str | None
    request_id: str | None
    details: dict[str, Any]


class AuditList(msgspec.Struct):
    entries: list[AuditEntry]
    next_cursor: str | None
