"""Organisation-side domain objects to response bodies: one place per view, so every route that
answers a member, a role or a group answers the same shape."""

from uuid import UUID

from domain.groups import Group
from domain.orgs import Membership, Organisation
from domain.permissions import role_permissions
from domain.roles import Role
from domain.users import User
from entrypoints.dto.orgs import GroupView, MemberView, OrgDetail, RoleView


def member_view(membership: Membership, user: User) -> MemberView:
    return MemberView(
        user_id=user.id,
        email=user.email,
        display_name=user.display_name,
        org_role=str(membership.role),
        joined_at=membership.created_at,
    )


def role_view(role: Role) -> RoleView:
    return RoleView(
        id=role.id,
        name=role.name,
        description=role.description,
        system=role.system,
        permissions=sorted(str(p) for p in role_permissions(role)),
    )


def group_view(
    group: Group, member_ids: list[UUID] | None = None, role_ids: list[UUID] | None = None
) -> GroupView:
    return GroupView(
        id=group.id,
        name=group.name,
        description=group.description,
        created_at=group.created_at,
        member_ids=member_ids,
        role_ids=role_ids,
    )


def org_detail(org: Organisation) -> OrgDetail:
    return OrgDetail(
        id=org.id,
        name=org.name,
        personal=org.personal,
        status=str(org.status),
        require_2fa=org.require_2fa,
        trust_sso_mfa=org.trust_sso_mfa,
    )
