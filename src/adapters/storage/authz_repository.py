"""Org-scoped storage of who may do what: custom roles, role assignments, groups, invitations.
Every method takes the org, filters by it, and declares it to row-level security first."""

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.storage.row_security import RowSecurity
from adapters.storage.tables import (
    group_members,
    group_roles,
    groups,
    invitations,
    member_roles,
    memberships,
    organisations,
    roles,
    users,
)
from application.errors import Conflict
from domain.groups import Group
from domain.invitations import Invitation
from domain.orgs import Membership, OrgRole
from domain.roles import Permission, Role
from domain.users import User


def _to_role(row: Any) -> Role:
    return Role(
        id=row.id,
        name=row.name,
        permissions=frozenset(Permission.parse(p) for p in row.permissions),
        org_id=row.org_id,
        system=False,
        description=row.description,
    )


def _to_group(row: Any) -> Group:
    return Group(
        id=row.id, org_id=row.org_id, name=row.name, created_at=row.created_at, description=row.description
    )


def _to_invitation(row: Any) -> Invitation:
    return Invitation(
        id=row.id,
        org_id=row.org_id,
        email=row.email,
        org_role=OrgRole(row.org_role),
        role_ids=tuple(UUID(r) for r in row.role_ids),
        group_ids=tuple(UUID(g) for g in row.group_ids),
        token_hash=row.token_hash,
        invited_by=row.invited_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        accepted_at=row.accepted_at,
        accepted_by=row.accepted_by,
    )


class SqlAuthzRepository:
    def __init__(self, connection: AsyncConnection, rls: RowSecurity) -> None:
        self.connection = connection
        self.rls = rls

    # --- authorization version -------------------------------------------------------------
    async def bump_version(self, org_id: UUID) -> int:
        await self.connection.execute(
            update(organisations)
            .where(organisations.c.id == org_id)
            .values(authz_version=organisations.c.authz_version + 1)
        )
        return await self.version(org_id)

    async def version(self, org_id: UUID) -> int:
        query = select(organisations.c.authz_version).where(organisations.c.id == org_id)
        return int((await self.connection.execute(query)).scalar_one_or_none() or 0)

    # --- members ---------------------------------------------------------------------------
    async def members(self, org_id: UUID) -> list[tuple[Membership, User]]:
        await self.rls.org(org_id)
        from adapters.storage.user_repository import _to_user

        query = (
            select(memberships.c.role, memberships.c.created_at.label("joined_at"), users)
            .join(users, users.c.id == memberships.c.user_id)
            .where(memberships.c.org_id == org_id)
            .order_by(users.c.email)
        )
        result = []
        for row in await self.connection.execute(query):
            user = _to_user(row)
            result.append((Membership(org_id, user.id, OrgRole(row.role), row.joined_at), user))
        return result

    async def membership(self, org_id: UUID, user_id: UUID) -> Membership | None:
        await self.rls.org(org_id)
        query = select(memberships).where(
            (memberships.c.org_id == org_id) & (memberships.c.user_id == user_id)
        )
        row = (await self.connection.execute(query)).first()
        return Membership(row.org_id, row.user_id, OrgRole(row.role), row.created_at) if row else None

    async def set_org_role(self, org_id: UUID, user_id: UUID, role: OrgRole) -> None:
        await self.rls.org(org_id)
        await self.connection.execute(
            update(memberships)
            .where((memberships.c.org_id == org_id) & (memberships.c.user_id == user_id))
            .values(role=str(role))
        )

    async def administrators(self, org_id: UUID) -> int:
        await self.rls.org(org_id)
        query = select(func.count()).where(
            (memberships.c.org_id == org_id) & (memberships.c.role == str(OrgRole.ADMINISTRATOR))
        )
        return int((await self.connection.execute(query)).scalar_one())

    async def remove_member(self, org_id: UUID, user_id: UUID) -> None:
        await self.rls.org(org_id)
        for table in (member_roles, group_members):
            await self.connection.execute(
                delete(table).where((table.c.org_id == org_id) & (table.c.user_id == user_id))
            )
        await self.connection.execute(
            delete(memberships).where((memberships.c.org_id == org_id) & (memberships.c.user_id == user_id))
        )

    # --- roles -----------------------------------------------------------------------------
    async def custom_roles(self, org_id: UUID) -> list[Role]:
        await self.rls.org(org_id)
        query = select(roles).where(roles.c.org_id == org_id).order_by(roles.c.name)
        return [_to_role(row) for row in await self.connection.execute(query)]

    async def custom_role(self, org_id: UUID, role_id: UUID) -> Role | None:
        await self.rls.org(org_id)
        query = select(roles).where((roles.c.org_id == org_id) & (roles.c.id == role_id))
        row = (await self.connection.execute(query)).first()
        return _to_role(row) if row else None

    async def custom_role_named(self, org_id: UUID, name: str) -> Role | None:
        await self.rls.org(org_id)
        query = select(roles).where(
            (roles.c.org_id == org_id) & (func.lower(roles.c.name) == func.lower(name))
        )
        row = (await self.connection.execute(query)).first()
        return _to_role(row) if row else None

    async def add_role(self, role: Role, now: datetime) -> None:
        assert role.org_id is not None
        await self.rls.org(role.org_id)
        try:
            async with self.connection.begin_nested():
                await self.connection.execute(
                    insert(roles).values(
                        id=role.id,
                        org_id=role.org_id,
                        name=role.name,
                        description=role.description,
                        permissions=sorted(str(p) for p in role.permissions),
                        created_at=now,
                    )
                )
        except IntegrityError:
            # Two names that differ only where the database's case folding differs from
            # the check's, or a concurrent twin: the unique constraint is the last word.
            raise Conflict("A role with this name exists.", code="role_name_taken") from None

    async def update_role(self, role: Role, now: datetime) -> None:
        assert role.org_id is not None
        await self.rls.org(role.org_id)
        try:
            async with self.connection.begin_nested():
                await self.connection.execute(
                    update(roles)
                    .where((roles.c.org_id == role.org_id) & (roles.c.id == role.id))
                    .values(
                        name=role.name,
                        description=role.description,
                        permissions=sorted(str(p) for p in role.permissions),
                        updated_at=now,
                    )
                )
        except IntegrityError:
            # Two names that differ only where the database's case folding differs from
            # the check's, or a concurrent twin: the unique constraint is the last word.
            raise Conflict("A role with this name exists.", code="role_name_taken") from None

    async def delete_role(self, org_id: UUID, role_id: UUID) -> None:
        await self.rls.org(org_id)
        for table in (member_roles, group_roles):
            await self.connection.execute(
                delete(table).where((table.c.org_id == org_id) & (table.c.role_id == role_id))
            )
        await self.connection.execute(
            delete(roles).where((roles.c.org_id == org_id) & (roles.c.id == role_id))
        )

    async def member_role_ids(self, org_id: UUID, user_id: UUID) -> list[UUID]:
        await self.rls.org(org_id)
        query = select(member_roles.c.role_id).where(
            (member_roles.c.org_id == org_id) & (member_roles.c.user_id == user_id)
        )
        return [row.role_id for row in await self.connection.execute(query)]

    async def assign_member_role(self, org_id: UUID, user_id: UUID, role_id: UUID, now: datetime) -> bool:
        if role_id in await self.member_role_ids(org_id, user_id):
            return False
        await self.connection.execute(
            insert(member_roles).values(org_id=org_id, user_id=user_id, role_id=role_id, created_at=now)
        )
        return True

    async def unassign_member_role(self, org_id: UUID, user_id: UUID, role_id: UUID) -> bool:
        await self.rls.org(org_id)
        result = await self.connection.execute(
            delete(member_roles).where(
                (member_roles.c.org_id == org_id)
                & (member_roles.c.user_id == user_id)
                & (member_roles.c.role_id == role_id)
            )
        )
        return bool(result.rowcount)

    # --- groups ----------------------------------------------------------------------------
    async def groups(self, org_id: UUID) -> list[Group]:
        await self.rls.org(org_id)
        query = select(groups).where(groups.c.org_id == org_id).order_by(groups.c.name)
        return [_to_group(row) for row in await self.connection.execute(query)]

    async def group(self, org_id: UUID, group_id: UUID) -> Group | None:
        await self.rls.org(org_id)
        query = select(groups).where((groups.c.org_id == org_id) & (groups.c.id == group_id))
        row = (await self.connection.execute(query)).first()
        return _to_group(row) if row else None

    async def group_named(self, org_id: UUID, name: str) -> Group | None:
        await self.rls.org(org_id)
        query = select(groups).where(
            (groups.c.org_id == org_id) & (func.lower(groups.c.name) == func.lower(name))
        )
        row = (await self.connection.execute(query)).first()
        return _to_group(row) if row else None

    async def add_group(self, group: Group) -> None:
        await self.rls.org(group.org_id)
        try:
            async with self.connection.begin_nested():
                await self.connection.execute(
                    insert(groups).values(
                        id=group.id,
                        org_id=group.org_id,
                        name=group.name,
                        description=group.description,
                        created_at=group.created_at,
                    )
                )
        except IntegrityError:
            # Two names that differ only where the database's case folding differs from
            # the check's, or a concurrent twin: the unique constraint is the last word.
            raise Conflict("A group with this name exists.", code="group_name_taken") from None

    async def update_group(self, group: Group) -> None:
        await self.rls.org(group.org_id)
        try:
            async with self.connection.begin_nested():
                await self.connection.execute(
                    update(groups)
                    .where((groups.c.org_id == group.org_id) & (groups.c.id == group.id))
                    .values(name=group.name, description=group.description)
                )
        except IntegrityError:
            # Two names that differ only where the database's case folding differs from
            # the check's, or a concurrent twin: the unique constraint is the last word.
            raise Conflict("A group with this name exists.", code="group_name_taken") from None

    async def delete_group(self, org_id: UUID, group_id: UUID) -> None:
        await self.rls.org(org_id)
        for table in (group_members, group_roles):
            await self.connection.execute(
                delete(table).where((table.c.org_id == org_id) & (table.c.group_id == group_id))
            )
        await self.connection.execute(
            delete(groups).where((groups.c.org_id == org_id) & (groups.c.id == group_id))
        )

    async def group_member_ids(self, org_id: UUID, group_id: UUID) -> list[UUID]:
        await self.rls.org(org_id)
        query = select(group_members.c.user_id).where(
            (group_members.c.org_id == org_id) & (group_members.c.group_id == group_id)
        )
        return [row.user_id for row in await self.connection.execute(query)]

    async def add_group_member(self, org_id: UUID, group_id: UUID, user_id: UUID, now: datetime) -> bool:
        if user_id in await self.group_member_ids(org_id, group_id):
            return False
        await self.connection.execute(
            insert(group_members).values(org_id=org_id, group_id=group_id, user_id=user_id, created_at=now)
        )
        return True

    async def remove_group_member(self, org_id: UUID, group_id: UUID, user_id: UUID) -> bool:
        await self.rls.org(org_id)
        result = await self.connection.execute(
            delete(group_members).where(
                (group_members.c.org_id == org_id)
                & (group_members.c.group_id == group_id)
                & (group_members.c.user_id == user_id)
            )
        )
        return bool(result.rowcount)

    async def group_role_ids(self, org_id: UUID, group_id: UUID) -> list[UUID]:
        await self.rls.org(org_id)
        query = select(group_roles.c.role_id).where(
            (group_roles.c.org_id == org_id) & (group_roles.c.group_id == group_id)
        )
        return [row.role_id for row in await self.connection.execute(query)]

    async def add_group_role(self, org_id: UUID, group_id: UUID, role_id: UUID, now: datetime) -> bool:
        if role_id in await self.group_role_ids(org_id, group_id):
            return False
        await self.connection.execute(
            insert(group_roles).values(org_id=org_id, group_id=group_id, role_id=role_id, created_at=now)
        )
        return True

    async def remove_group_role(self, org_id: UUID, group_id: UUID, role_id: UUID) -> bool:
        await self.rls.org(org_id)
        result = await self.connection.execute(
            delete(group_roles).where(
                (group_roles.c.org_id == org_id)
                & (group_roles.c.group_id == group_id)
                & (group_roles.c.role_id == role_id)
            )
        )
        return bool(result.rowcount)

    async def groups_with_roles_of_member(
        self, org_id: UUID, user_id: UUID
    ) -> list[tuple[Group, list[UUID]]]:
        await self.rls.org(org_id)
        query = (
            select(groups, group_roles.c.role_id)
            .join(
                group_members, (group_members.c.group_id == groups.c.id) & (group_members.c.org_id == org_id)
            )
            .outerjoin(
                group_roles, (group_roles.c.group_id == groups.c.id) & (group_roles.c.org_id == org_id)
            )
            .where((groups.c.org_id == org_id) & (group_members.c.user_id == user_id))
        )
        found: dict[UUID, tuple[Group, list[UUID]]] = {}
        for row in await self.connection.execute(query):
            _, role_ids = found.setdefault(row.id, (_to_group(row), []))
            if row.role_id is not None:
                role_ids.append(row.role_id)
        return list(found.values())

    # --- invitations -----------------------------------------------------------------------
    async def add_invitation(self, invitation: Invitation) -> None:
        await self.rls.org(invitation.org_id)
        await self.connection.execute(
            insert(invitations).values(
                id=invitation.id,
                org_id=invitation.org_id,
                email=invitation.email,
                org_role=str(invitation.org_role),
                role_ids=[str(r) for r in invitation.role_ids],
                group_ids=[str(g) for g in invitation.group_ids],
                token_hash=invitation.token_hash,
                invited_by=invitation.invited_by,
                created_at=invitation.created_at,
                expires_at=invitation.expires_at,
            )
        )

    async def invitation(self, org_id: UUID, token_hash: str) -> Invitation | None:
        await self.rls.org(org_id)
        query = select(invitations).where(
            (invitations.c.org_id == org_id) & (invitations.c.token_hash == token_hash)
        )
        row = (await self.connection.execute(query)).first()
        return _to_invitation(row) if row else None

    async def accept_invitation(
        self, org_id: UUID, invitation_id: UUID, user_id: UUID, now: datetime
    ) -> bool:
        await self.rls.org(org_id)
        result = await self.connection.execute(
            update(invitations)
            .where(
                (invitations.c.org_id == org_id)
                & (invitations.c.id == invitation_id)
                & invitations.c.accepted_at.is_(None)
            )
            .values(accepted_at=now, accepted_by=user_id)
        )
        return result.rowcount == 1

    async def existing_ids(self, org_id: UUID, role_ids: Iterable[UUID], group_ids: Iterable[UUID]) -> bool:
        """True when every custom role id and group id given belongs to this org."""
        wanted_roles, wanted_groups = set(role_ids), set(group_ids)
        have_roles = {r.id for r in await self.custom_roles(org_id)}
        have_groups = {g.id for g in await self.groups(org_id)}
        return wanted_roles <= have_roles and wanted_groups <= have_groups
