"""An in-memory AuthzRepository: roles, assignments, groups and invitations, org by org, with the
same cascades as the SQL adapter (deleting a role drops its links, removing a member drops their
role and group links). Rows live in the fake unit of work's transaction journal, so they commit,
roll back and lock like every other fake table."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.groups import Group
from domain.invitations import Invitation
from domain.orgs import Membership, OrgRole
from domain.roles import Role
from domain.users import User

if TYPE_CHECKING:
    from tests.unit.fakes import _Transaction

MEMBERSHIPS = "memberships"
MEMBER_ROLES = "member_roles"
USERS = "users"
ORGS = "organisations"
ROLES = "roles"
GROUPS = "groups"
GROUP_MEMBERS = "group_members"
GROUP_ROLES = "group_roles"
INVITATIONS = "invitations"
AUTHZ_VERSIONS = "organisations.authz_version"


@dataclass
class MemberRoleRow:
    org_id: UUID
    user_id: UUID
    role_id: UUID
    created_at: datetime


@dataclass
class GroupLinkRow:
    org_id: UUID
    group_id: UUID
    other_id: UUID  # a user (group_members) or a role (group_roles)
    created_at: datetime


class FakeAuthzRepository:
    def __init__(self, tx: "_Transaction") -> None:
        self.tx = tx

    def _where(self, table: str, **equal: object) -> list[Any]:
        return [row for row in self.tx.rows(table) if all(getattr(row, k) == v for k, v in equal.items())]

    # --- authorization version -------------------------------------------------------------
    async def bump_version(self, org_id: UUID) -> int:
        await self.tx.lock(ORGS, org_id)  # the SQL adapter updates the org's row
        version = await self.version(org_id) + 1
        self.tx.put(AUTHZ_VERSIONS, org_id, version)
        return version

    async def version(self, org_id: UUID) -> int:
        return int(self.tx.get(AUTHZ_VERSIONS, org_id) or 0)

    # --- members ---------------------------------------------------------------------------
    async def members(self, org_id: UUID) -> list[tuple[Membership, User]]:
        found = []
        for membership in self._where(MEMBERSHIPS, org_id=org_id):
            user = self.tx.get(USERS, membership.user_id)
            if user is not None:
                found.append((membership, user))
        return sorted(found, key=lambda pair: pair[1].email)

    async def membership(self, org_id: UUID, user_id: UUID) -> Membership | None:
        membership: Membership | None = self.tx.get(MEMBERSHIPS, (org_id, user_id))
        return membership

    async def set_org_role(self, org_id: UUID, user_id: UUID, role: OrgRole) -> None:
        await self.tx.lock(MEMBERSHIPS, (org_id, user_id))
        membership = self.tx.get(MEMBERSHIPS, (org_id, user_id))
        if membership is not None:
            membership.role = role
            self.tx.put(MEMBERSHIPS, (org_id, user_id), membership)

    async def administrators(self, org_id: UUID) -> int:
        return len(self._where(MEMBERSHIPS, org_id=org_id, role=OrgRole.ADMINISTRATOR))

    async def remove_member(self, org_id: UUID, user_id: UUID) -> None:
        for row in self._where(MEMBER_ROLES, org_id=org_id, user_id=user_id):
            self.tx.delete(MEMBER_ROLES, (org_id, user_id, row.role_id))
        for row in self._where(GROUP_MEMBERS, org_id=org_id, other_id=user_id):
            self.tx.delete(GROUP_MEMBERS, (org_id, row.group_id, user_id))
        await self.tx.lock(MEMBERSHIPS, (org_id, user_id))
        self.tx.delete(MEMBERSHIPS, (org_id, user_id))

    # --- roles -----------------------------------------------------------------------------
    async def custom_roles(self, org_id: UUID) -> list[Role]:
        return sorted(self._where(ROLES, org_id=org_id), key=lambda role: role.name)

    async def custom_role(self, org_id: UUID, role_id: UUID) -> Role | None:
        role: Role | None = self.tx.get(ROLES, (org_id, role_id))
        return role

    async def custom_role_named(self, org_id: UUID, name: str) -> Role | None:
        found = [r for r in self._where(ROLES, org_id=org_id) if r.name.lower() == name.lower()]
        return found[0] if found else None

    async def add_role(self, role: Role, now: datetime) -> None:
        assert role.org_id is not None
        self.tx.put(ROLES, (role.org_id, role.id), role)

    async def update_role(self, role: Role, now: datetime) -> None:
        assert role.org_id is not None
        await self.tx.lock(ROLES, (role.org_id, role.id))
        if self.tx.get(ROLES, (role.org_id, role.id)) is not None:
            self.tx.put(ROLES, (role.org_id, role.id), role)

    async def delete_role(self, org_id: UUID, role_id: UUID) -> None:
        for row in self._where(MEMBER_ROLES, org_id=org_id, role_id=role_id):
            self.tx.delete(MEMBER_ROLES, (org_id, row.user_id, role_id))
        for row in self._where(GROUP_ROLES, org_id=org_id, other_id=role_id):
            self.tx.delete(GROUP_ROLES, (org_id, row.group_id, role_id))
        self.tx.delete(ROLES, (org_id, role_id))

    async def member_role_ids(self, org_id: UUID, user_id: UUID) -> list[UUID]:
        return [row.role_id for row in self._where(MEMBER_ROLES, org_id=org_id, user_id=user_id)]

    async def assign_member_role(self, org_id: UUID, user_id: UUID, role_id: UUID, now: datetime) -> bool:
        key = (org_id, user_id, role_id)
        await self.tx.lock(MEMBER_ROLES, key)
        if self.tx.get(MEMBER_ROLES, key) is not None:
            return False
        self.tx.require(MEMBERSHIPS, (org_id, user_id))
        self.tx.put(MEMBER_ROLES, key, MemberRoleRow(org_id, user_id, role_id, now))
        return True

    async def unassign_member_role(self, org_id: UUID, user_id: UUID, role_id: UUID) -> bool:
        key = (org_id, user_id, role_id)
        await self.tx.lock(MEMBER_ROLES, key)
        if self.tx.get(MEMBER_ROLES, key) is None:
            return False
        self.tx.delete(MEMBER_ROLES, key)
        return True

    # --- groups ----------------------------------------------------------------------------
    async def groups(self, org_id: UUID) -> list[Group]:
        return sorted(self._where(GROUPS, org_id=org_id), key=lambda group: group.name)

    async def group(self, org_id: UUID, group_id: UUID) -> Group | None:
        group: Group | None = self.tx.get(GROUPS, (org_id, group_id))
        return group

    async def group_named(self, org_id: UUID, name: str) -> Group | None:
        found = [g for g in self._where(GROUPS, org_id=org_id) if g.name.lower() == name.lower()]
        return found[0] if found else None

    async def add_group(self, group: Group) -> None:
        self.tx.put(GROUPS, (group.org_id, group.id), group)

    async def update_group(self, group: Group) -> None:
        if self.tx.get(GROUPS, (group.org_id, group.id)) is not None:
            self.tx.put(GROUPS, (group.org_id, group.id), group)

    async def delete_group(self, org_id: UUID, group_id: UUID) -> None:
        for table in (GROUP_MEMBERS, GROUP_ROLES):
            for row in self._where(table, org_id=org_id, group_id=group_id):
                self.tx.delete(table, (org_id, group_id, row.other_id))
        self.tx.delete(GROUPS, (org_id, group_id))

    async def _link(self, table: str, org_id: UUID, group_id: UUID, other_id: UUID, now: datetime) -> bool:
        key = (org_id, group_id, other_id)
        await self.tx.lock(table, key)
        if self.tx.get(table, key) is not None:
            return False
        self.tx.require(GROUPS, (org_id, group_id))
        self.tx.put(table, key, GroupLinkRow(org_id, group_id, other_id, now))
        return True

    async def _unlink(self, table: str, org_id: UUID, group_id: UUID, other_id: UUID) -> bool:
        key = (org_id, group_id, other_id)
        await self.tx.lock(table, key)
        if self.tx.get(table, key) is None:
            return False
        self.tx.delete(table, key)
        return True

    async def group_member_ids(self, org_id: UUID, group_id: UUID) -> list[UUID]:
        return [row.other_id for row in self._where(GROUP_MEMBERS, org_id=org_id, group_id=group_id)]

    async def add_group_member(self, org_id: UUID, group_id: UUID, user_id: UUID, now: datetime) -> bool:
        self.tx.require(MEMBERSHIPS, (org_id, user_id))
        return await self._link(GROUP_MEMBERS, org_id, group_id, user_id, now)

    async def remove_group_member(self, org_id: UUID, group_id: UUID, user_id: UUID) -> bool:
        return await self._unlink(GROUP_MEMBERS, org_id, group_id, user_id)

    async def group_role_ids(self, org_id: UUID, group_id: UUID) -> list[UUID]:
        return [row.other_id for row in self._where(GROUP_ROLES, org_id=org_id, group_id=group_id)]

    async def add_group_role(self, org_id: UUID, group_id: UUID, role_id: UUID, now: datetime) -> bool:
        return await self._link(GROUP_ROLES, org_id, group_id, role_id, now)

    async def remove_group_role(self, org_id: UUID, group_id: UUID, role_id: UUID) -> bool:
        return await self._unlink(GROUP_ROLES, org_id, group_id, role_id)

    async def groups_with_roles_of_member(
        self, org_id: UUID, user_id: UUID
    ) -> list[tuple[Group, list[UUID]]]:
        found = []
        for row in self._where(GROUP_MEMBERS, org_id=org_id, other_id=user_id):
            group = self.tx.get(GROUPS, (org_id, row.group_id))
            if group is not None:
                found.append((group, await self.group_role_ids(org_id, group.id)))
        return found

    # --- invitations -----------------------------------------------------------------------
    async def add_invitation(self, invitation: Invitation) -> None:
        self.tx.put(INVITATIONS, (invitation.org_id, invitation.id), invitation)

    async def invitation(self, org_id: UUID, token_hash: str) -> Invitation | None:
        found = self._where(INVITATIONS, org_id=org_id, token_hash=token_hash)
        return found[0] if found else None

    async def accept_invitation(
        self, org_id: UUID, invitation_id: UUID, user_id: UUID, now: datetime
    ) -> bool:
        await self.tx.lock(INVITATIONS, (org_id, invitation_id))
        invitation = self.tx.get(INVITATIONS, (org_id, invitation_id))
        if invitation is None or invitation.accepted_at is not None:
            return False
        invitation.accepted_at, invitation.accepted_by = now, user_id
        self.tx.put(INVITATIONS, (org_id, invitation_id), invitation)
        return True

    async def existing_ids(self, org_id: UUID, role_ids: Iterable[UUID], group_ids: Iterable[UUID]) -> bool:
        have_roles = {r.id for r in await self.custom_roles(org_id)}
        have_groups = {g.id for g in await self.groups(org_id)}
        return set(role_ids) <= have_roles and set(group_ids) <= have_groups
