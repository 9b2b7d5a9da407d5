"""Resolving what a principal may do in their current org, and keeping every worker's cached
answer honest: each change bumps the org's authorization version in the same transaction, and
cached permission sets are keyed by that version."""

import logging
from dataclasses import dataclass
from uuid import UUID

from application.errors import Forbidden, NotFound
from application.identity import IdentityDeps
from application.ports.authz_cache import AuthzVersions, PermissionCache
from application.ports.unit_of_work import UnitOfWork
from application.use_cases.sessions import Principal
from domain.orgs import Membership, OrgRole
from domain.permissions import (
    SYSTEM_ROLE_BY_ID,
    EffectivePermissions,
    resolve_permissions,
    role_permissions,
    system_role,
)
from domain.roles import Permission, Role

log = logging.getLogger("bulwark.authz")


@dataclass
class AuthzDeps:
    identity: IdentityDeps
    versions: AuthzVersions
    cache: PermissionCache


async def roles_by_id(uow: UnitOfWork, org_id: UUID, role_ids: list[UUID]) -> dict[UUID, Role]:
    """System roles come from the code; custom roles from this org only."""
    found: dict[UUID, Role] = {}
    custom = {role.id: role for role in await uow.authz.custom_roles(org_id)} if role_ids else {}
    for role_id in role_ids:
        system = SYSTEM_ROLE_BY_ID.get(role_id)
        if system is not None:
            found[role_id] = system_role(system)
        elif role_id in custom:
            found[role_id] = custom[role_id]
    return found


async def load_effective(uow: UnitOfWork, org_id: UUID, user_id: UUID) -> EffectivePermissions:
    """From the database: the user's direct roles and the roles of their groups, in this org."""
    if await uow.authz.membership(org_id, user_id) is None:
        return EffectivePermissions()
    direct_ids = await uow.authz.member_role_ids(org_id, user_id)
    grouped = await uow.authz.groups_with_roles_of_member(org_id, user_id)
    all_ids = list({*direct_ids, *(rid for _, ids in grouped for rid in ids)})
    roles = await roles_by_id(uow, org_id, all_ids)
    return resolve_permissions(
        [roles[r] for r in direct_ids if r in roles],
        [(group, [roles[r] for r in ids if r in roles]) for group, ids in grouped],
        org_id=org_id,
    )


async def group_permissions(uow: UnitOfWork, org_id: UUID, group_id: UUID) -> frozenset[Permission]:
    roles = await roles_by_id(uow, org_id, await uow.authz.group_role_ids(org_id, group_id))
    return frozenset(p for role in roles.values() for p in role_permissions(role))


class PermissionResolver:
    def __init__(self, deps: AuthzDeps) -> None:
        self.deps = deps

    async def version(self, org_id: UUID) -> int:
        current = await self.deps.versions.current(org_id)
        if current is not None:
            return current
        # Unknown here (never bumped since this worker loaded, or the store is degraded): the
        # database is the truth; seed the store so every worker learns it once, not per request.
        async with self.deps.identity.uow() as uow:
            version = await uow.authz.version(org_id)
        if await self.deps.versions.healthy():
            await self.published(org_id, version)
        return version

    async def names(self, principal: Principal) -> frozenset[str]:
        """The hot path: answered from the worker's memory when the cache is warm."""
        version = await self.version(principal.org_id)
        cached = await self.deps.cache.get(principal.user_id, principal.org_id, version)
        if cached is not None:
            return cached
        async with self.deps.identity.uow() as uow:
            # The version first: a change committed while we read the roles then lands under a
            # newer version than the one we store (harmless), never the other way round.
            version = await uow.authz.version(principal.org_id)
            names = (await load_effective(uow, principal.org_id, principal.user_id)).names
        await self.deps.cache.put(principal.user_id, principal.org_id, version, names)
        return names

    async def effective(self, principal: Principal) -> EffectivePermissions:
        async with self.deps.identity.uow() as uow:
            return await load_effective(uow, principal.org_id, principal.user_id)

    async def require(self, principal: Principal, permission: str) -> None:
        if permission not in await self.names(principal):
            raise Forbidden(f"This needs the `{permission}` permission.", code="permission_denied")

    async def require_write(self, principal: Principal) -> None:
        """Viewers (nothing but read permissions) may not change anything."""
        if not any(not name.endswith(":read") for name in await self.names(principal)):
            raise Forbidden("Your roles only allow reading.", code="read_only")

    async def is_member(self, principal: Principal) -> bool:
        async with self.deps.identity.uow() as uow:
            return await uow.authz.membership(principal.org_id, principal.user_id) is not None

    async def require_org_admin(self, principal: Principal) -> Membership:
        async with self.deps.identity.uow() as uow:
            membership = await uow.authz.membership(principal.org_id, principal.user_id)
        if membership is None or membership.role is not OrgRole.ADMINISTRATOR:
            raise Forbidden("Only an organisation administrator may do this.", code="org_admin_required")
        return membership

    async def published(self, org_id: UUID, version: int) -> None:
        """After the commit that bumped the version: tell every worker."""
        try:
            await self.deps.versions.bump(org_id, version)
        except Exception:
            log.error("authorization version store unavailable; org %s relies on the database", org_id)


def same_org(principal: Principal, org_id: UUID) -> None:
    """Org-scoped paths must name the token's org; anything else looks like a missing org."""
    if org_id != principal.org_id:
        raise NotFound("No such organisation.")
