"""Roles (system and custom) and who holds them, directly or through groups. Taking a role or a
group link away follows the rules of granting it."""

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from application.administrators import set_administrator
from application.authorization import AuthzDeps, PermissionResolver, group_permissions, same_org
from application.errors import Conflict, Forbidden, InvalidInput, NotFound
from application.identity import RequestContext
from application.org_authority import authorize
from application.ports.unit_of_work import UnitOfWork
from application.text_input import validated_text
from application.use_cases.sessions import Principal
from domain.groups import Group
from domain.permissions import (
    ADMINISTRATOR_ROLE_ID,
    SYSTEM_ROLE_BY_ID,
    parse_permissions,
    role_permissions,
    system_role,
    system_roles,
)
from domain.roles import Permission, Role


def _valid_name(name: str, what: str) -> str:
    return validated_text(name, "name", f"{what} names", 100)


def _valid_description(description: str) -> str:
    return validated_text(description, "description", "Descriptions", 500, required=False)


def _permissions(texts: list[str]) -> frozenset[Permission]:
    try:
        return parse_permissions(texts)
    except (ValueError, TypeError) as error:
        raise InvalidInput(str(error), code="unknown_permission", field="permissions") from None


async def _role_in_org(uow: UnitOfWork, org_id: uuid.UUID, role_id: uuid.UUID) -> Role:
    system = SYSTEM_ROLE_BY_ID.get(role_id)
    if system is not None:
        return system_role(system)
    role = await uow.authz.custom_role(org_id, role_id)
    if role is None:
        raise NotFound("No such role.")
    return role


async def _group_in_org(uow: UnitOfWork, org_id: uuid.UUID, group_id: uuid.UUID) -> Group:
    group = await uow.authz.group(org_id, group_id)
    if group is None:
        raise NotFound("No such group.")
    return group


async def _member_in_org(uow: UnitOfWork, org_id: uuid.UUID, user_id: uuid.UUID) -> None:
    if await uow.authz.membership(org_id, user_id) is None:
        raise NotFound("No such member.")


@dataclass(frozen=True)
class LinkCheck:
    """What adding or removing one link touches: audit details, the permissions it gives or takes
    away, and the role ids they come through (the Administrator role needs an administrator)."""

    details: dict[str, Any]
    permissions: frozenset[Permission]
    role_ids: frozenset[uuid.UUID]


def _described(role: Role) -> dict[str, Any]:
    return {"name": role.name, "permissions": sorted(str(p) for p in role_permissions(role))}


@dataclass
class AccessUseCase:
    deps: AuthzDeps

    @property
    def resolver(self) -> PermissionResolver:
        return PermissionResolver(self.deps)

    async def _link(
        self,
        principal: Principal,
        org_id: uuid.UUID,
        ctx: RequestContext,
        *,
        permission: str,
        add: bool,
        check: Callable[[UnitOfWork], Awaitable[LinkCheck]],
        apply: Callable[[UnitOfWork, datetime], Awaitable[bool]],
        missing: str,
        action: str,
        target: tuple[str, uuid.UUID],
    ) -> None:
        """Adds or removes one link (member-role, group-member, group-role). Taking away follows the
        rules of granting: the same permission, and only permissions the actor holds. Both sides
        must exist in the org; a change bumps the org's authorization version, is audited with
        before/after, and is published so every worker's cached permissions drop at once."""
        now = self.deps.identity.clock.now()
        async with self.deps.identity.uow() as uow:
            actor = await authorize(uow, principal, org_id, permission)
            found = await check(uow)
            actor.ensure_may_move_administrator(found.role_ids)
            actor.ensure_holds(found.permissions)
            changed = await apply(uow, now)
            if not changed and not add:
                raise NotFound(missing)
            if not changed:
                return  # already there: nothing to do
            version = await uow.authz.bump_version(org_id)
            await uow.audit.append(
                ctx.event(
                    action,
                    actor=principal.user_id,
                    org=org_id,
                    target_type=target[0],
                    target_id=target[1],
                    before={"linked": not add},
                    after={"linked": add},
                    **found.details,
                )
            )
            await uow.commit()
        await self.resolver.published(org_id, version)


class ListRoles(AccessUseCase):
    async def __call__(self, principal: Principal, org_id: uuid.UUID) -> list[Role]:
        same_org(principal, org_id)
        await self.resolver.require(principal, "roles:read")
        async with self.deps.identity.uow() as uow:
            return system_roles() + await uow.authz.custom_roles(org_id)


class CreateRole(AccessUseCase):
    async def __call__(
        self,
        principal: Principal,
        org_id: uuid.UUID,
        name: str,
        description: str,
        permissions: list[str],
        ctx: RequestContext,
    ) -> Role:
        role = Role(
            id=uuid.uuid4(),
            name=_valid_name(name, "Role"),
            permissions=_permissions(permissions),
            org_id=org_id,
            description=_valid_description(description),
        )
        now = self.deps.identity.clock.now()
        async with self.deps.identity.uow() as uow:
            actor = await authorize(uow, principal, org_id, "roles:create")
            actor.ensure_holds(role.permissions)
            if await uow.authz.custom_role_named(org_id, role.name) or any(
                r.name.lower() == role.name.lower() for r in system_roles()
            ):
                raise Conflict("A role with this name exists.", code="role_name_taken")
            await uow.authz.add_role(role, now)
            await uow.audit.append(
                ctx.event(
                    "role.created",
                    actor=principal.user_id,
                    org=org_id,
                    target_type="role",
                    target_id=role.id,
                    after=_described(role),
                )
            )
            await uow.commit()
        return role


class UpdateRole(AccessUseCase):
    """Renaming or re-scoping a role changes what everyone holding it has: the actor must hold
    every permission the role grants before and after."""

    async def __call__(
        self,
        principal: Principal,
        org_id: uuid.UUID,
        role_id: uuid.UUID,
        name: str | None,
        description: str | None,
        permissions: list[str] | None,
        ctx: RequestContext,
    ) -> Role:
        same_org(principal, org_id)
        if role_id in SYSTEM_ROLE_BY_ID:
            raise Forbidden("System roles cannot be changed.", code="system_role_immutable")
        new_name = _valid_name(name, "Role") if name is not None else None
        new_permissions = _permissions(permissions) if permissions is not None else None
        now = self.deps.identity.clock.now()
        async with self.deps.identity.uow() as uow:
            actor = await authorize(uow, principal, org_id, "roles:update")
            role = await _role_in_org(uow, org_id, role_id)
            before = _described(role)
            actor.ensure_holds(role_permissions(role) | (new_permissions or frozenset()))
            if new_name is not None:
                role.name = new_name
                other = await uow.authz.custom_role_named(org_id, role.name)
                if (other and other.id != role.id) or any(
                    r.name.lower() == role.name.lower() for r in system_roles()
                ):
                    raise Conflict("A role with this name exists.", code="role_name_taken")
            if description is not None:
                role.description = _valid_description(description)
            if new_permissions is not None:
                role.permissions = new_permissions
            await uow.authz.update_role(role, now)
            version = await uow.authz.bump_version(org_id)
            await uow.audit.append(
                ctx.event(
                    "role.updated",
                    actor=principal.user_id,
                    org=org_id,
                    target_type="role",
                    target_id=role.id,
                    before=before,
                    after=_described(role),
                )
            )
            await uow.commit()
        await self.resolver.published(org_id, version)
        return role


class DeleteRole(AccessUseCase):
    """Deleting a role takes its permissions from everyone holding it: only for those who hold them."""

    async def __call__(
        self, principal: Principal, org_id: uuid.UUID, role_id: uuid.UUID, ctx: RequestContext
    ) -> None:
        same_org(principal, org_id)
        if role_id in SYSTEM_ROLE_BY_ID:
            raise Forbidden("System roles cannot be deleted.", code="system_role_immutable")
        async with self.deps.identity.uow() as uow:
            actor = await authorize(uow, principal, org_id, "roles:delete")
            role = await _role_in_org(uow, org_id, role_id)
            actor.ensure_holds(role_permissions(role))
            await uow.authz.delete_role(org_id, role_id)
            version = await uow.authz.bump_version(org_id)
            await uow.audit.append(
                ctx.event(
                    "role.deleted",
                    actor=principal.user_id,
                    org=org_id,
                    target_type="role",
                    target_id=role_id,
                    before=_described(role),
                )
            )
            await uow.commit()
        await self.resolver.published(org_id, version)


class SetMemberRole(AccessUseCase):
    """PUT (assign=True) or DELETE (assign=False) a role held directly by a member. The
    Administrator role is the org administrator role: giving it promotes, taking it demotes."""

    async def __call__(
        self,
        principal: Principal,
        org_id: uuid.UUID,
        user_id: uuid.UUID,
        role_id: uuid.UUID,
        assign: bool,
        ctx: RequestContext,
    ) -> None:
        if role_id == ADMINISTRATOR_ROLE_ID:
            await self._promote_or_demote(principal, org_id, user_id, assign, ctx)
            return

        async def check(uow: UnitOfWork) -> LinkCheck:
            await _member_in_org(uow, org_id, user_id)
            role = await _role_in_org(uow, org_id, role_id)
            details = {"role_id": role_id, "role_name": role.name}
            return LinkCheck(details, role_permissions(role), frozenset({role_id}))

        async def apply(uow: UnitOfWork, now: datetime) -> bool:
            if assign:
                return await uow.authz.assign_member_role(org_id, user_id, role_id, now)
            return await uow.authz.unassign_member_role(org_id, user_id, role_id)

        await self._link(
            principal,
            org_id,
            ctx,
            permission="roles:update",
            add=assign,
            check=check,
            apply=apply,
            missing="That member does not hold this role.",
            action="member.role_assigned" if assign else "member.role_removed",
            target=("user", user_id),
        )

    async def _promote_or_demote(
        self, principal: Principal, org_id: uuid.UUID, user_id: uuid.UUID, promote: bool, ctx: RequestContext
    ) -> None:
        async with self.deps.identity.uow() as uow:
            actor = await authorize(uow, principal, org_id, "roles:update")
            actor.require_administrator()
            holds = ADMINISTRATOR_ROLE_ID in await uow.authz.member_role_ids(org_id, user_id)
            if not promote and not holds and await uow.authz.membership(org_id, user_id) is not None:
                raise NotFound("That member does not hold this role.")
            _, version = await set_administrator(
                uow, actor, user_id, promote, self.deps.identity.clock.now(), ctx
            )
            await uow.commit()
        if version is not None:
            await self.resolver.published(org_id, version)
            self.deps.identity.profiles.forget_user(user_id)


@dataclass(frozen=True)
class GroupDetail:
    group: Group
    member_ids: list[uuid.UUID]
    role_ids: list[uuid.UUID]


class ListGroups(AccessUseCase):
    async def __call__(self, principal: Principal, org_id: uuid.UUID) -> list[Group]:
        same_org(principal, org_id)
        await self.resolver.require(principal, "groups:read")
        async with self.deps.identity.uow() as uow:
            return await uow.authz.groups(org_id)


class GetGroup(AccessUseCase):
    async def __call__(self, principal: Principal, org_id: uuid.UUID, group_id: uuid.UUID) -> GroupDetail:
        same_org(principal, org_id)
        await self.resolver.require(principal, "groups:read")
        async with self.deps.identity.uow() as uow:
            group = await _group_in_org(uow, org_id, group_id)
            return GroupDetail(
                group,
                await uow.authz.group_member_ids(org_id, group_id),
                await uow.authz.group_role_ids(org_id, group_id),
            )


class CreateGroup(AccessUseCase):
    async def __call__(
        self, principal: Principal, org_id: uuid.UUID, name: str, description: str, ctx: RequestContext
    ) -> Group:
        now = self.deps.identity.clock.now()
        group = Group(
            id=uuid.uuid4(),
            org_id=org_id,
            name=_valid_name(name, "Group"),
            created_at=now,
            description=_valid_description(description),
        )
        async with self.deps.identity.uow() as uow:
            await authorize(uow, principal, org_id, "groups:create")
            if await uow.authz.group_named(org_id, group.name):
                raise Conflict("A group with this name exists.", code="group_name_taken")
            await uow.authz.add_group(group)
            await uow.audit.append(
                ctx.event(
                    "group.created",
                    actor=principal.user_id,
                    org=org_id,
                    target_type="group",
                    target_id=group.id,
                    after={"name": group.name},
                )
            )
            await uow.commit()
        return group


class UpdateGroup(AccessUseCase):
    """A group's name and description; what it grants changes through its links only."""

    async def __call__(
        self,
        principal: Principal,
        org_id: uuid.UUID,
        group_id: uuid.UUID,
        name: str | None,
        description: str | None,
        ctx: RequestContext,
    ) -> Group:
        new_name = _valid_name(name, "Group") if name is not None else None
        async with self.deps.identity.uow() as uow:
            await authorize(uow, principal, org_id, "groups:update")
            group = await _group_in_org(uow, org_id, group_id)
            before = {"name": group.name, "description": group.description}
            if new_name is not None:
                group.name = new_name
                other = await uow.authz.group_named(org_id, group.name)
                if other and other.id != group.id:
                    raise Conflict("A group with this name exists.", code="group_name_taken")
            if description is not None:
                group.description = _valid_description(description)
            await uow.authz.update_group(group)
            await uow.audit.append(
                ctx.event(
                    "group.updated",
                    actor=principal.user_id,
                    org=org_id,
                    target_type="group",
                    target_id=group.id,
                    before=before,
                    after={"name": group.name, "description": group.description},
                )
            )
            await uow.commit()
        return group


class DeleteGroup(AccessUseCase):
    """Deleting a group takes its roles from its members: the actor must hold what it grants."""

    async def __call__(
        self, principal: Principal, org_id: uuid.UUID, group_id: uuid.UUID, ctx: RequestContext
    ) -> None:
        async with self.deps.identity.uow() as uow:
            actor = await authorize(uow, principal, org_id, "groups:delete")
            group = await _group_in_org(uow, org_id, group_id)
            members = await uow.authz.group_member_ids(org_id, group_id)
            role_ids = await uow.authz.group_role_ids(org_id, group_id)
            actor.ensure_may_move_administrator(role_ids)
            actor.ensure_holds(await group_permissions(uow, org_id, group_id))
            await uow.authz.delete_group(org_id, group_id)
            version = await uow.authz.bump_version(org_id)
            await uow.audit.append(
                ctx.event(
                    "group.deleted",
                    actor=principal.user_id,
                    org=org_id,
                    target_type="group",
                    target_id=group_id,
                    before={
                        "name": group.name,
                        "member_ids": [str(m) for m in members],
                        "role_ids": [str(r) for r in role_ids],
                    },
                )
            )
            await uow.commit()
        await self.resolver.published(org_id, version)


class SetGroupMember(AccessUseCase):
    async def __call__(
        self,
        principal: Principal,
        org_id: uuid.UUID,
        group_id: uuid.UUID,
        user_id: uuid.UUID,
        add: bool,
        ctx: RequestContext,
    ) -> None:
        async def check(uow: UnitOfWork) -> LinkCheck:
            await _group_in_org(uow, org_id, group_id)
            await _member_in_org(uow, org_id, user_id)
            return LinkCheck(
                {"user_id": user_id},
                await group_permissions(uow, org_id, group_id),
                frozenset(await uow.authz.group_role_ids(org_id, group_id)),
            )

        async def apply(uow: UnitOfWork, now: datetime) -> bool:
            if add:
                return await uow.authz.add_group_member(org_id, group_id, user_id, now)
            return await uow.authz.remove_group_member(org_id, group_id, user_id)

        await self._link(
            principal,
            org_id,
            ctx,
            permission="groups:update",
            add=add,
            check=check,
            apply=apply,
            missing="That user is not in this group.",
            action="group.member_added" if add else "group.member_removed",
            target=("group", group_id),
        )


class SetGroupRole(AccessUseCase):
    async def __call__(
        self,
        principal: Principal,
        org_id: uuid.UUID,
        group_id: uuid.UUID,
        role_id: uuid.UUID,
        add: bool,
        ctx: RequestContext,
    ) -> None:
        async def check(uow: UnitOfWork) -> LinkCheck:
            await _group_in_org(uow, org_id, group_id)
            role = await _role_in_org(uow, org_id, role_id)
            details = {"role_id": role_id, "role_name": role.name}
            return LinkCheck(details, role_permissions(role), frozenset({role_id}))

        async def apply(uow: UnitOfWork, now: datetime) -> bool:
            if add:
                return await uow.authz.add_group_role(org_id, group_id, role_id, now)
            return await uow.authz.remove_group_role(org_id, group_id, role_id)

        await self._link(
            principal,
            org_id,
            ctx,
            permission="groups:update",
            add=add,
            check=check,
            apply=apply,
            missing="This group does not hold that role.",
            action="group.role_added" if add else "group.role_removed",
            target=("group", group_id),
        )
