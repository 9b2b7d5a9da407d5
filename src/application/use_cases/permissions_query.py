"""What the caller may do in their current org: in full (with sources) or as yes/no checks."""

from dataclasses import dataclass

from application.authorization import AuthzDeps, PermissionResolver
from application.errors import InvalidInput
from application.use_cases.sessions import Principal
from domain.permissions import EffectivePermissions

MAX_BATCH = 100


@dataclass
class MyPermissions:
    deps: AuthzDeps

    async def __call__(self, principal: Principal) -> EffectivePermissions:
        return await PermissionResolver(self.deps).effective(principal)


@dataclass
class CheckPermissions:
    """The hot path of every trading call: answered from the worker's memory when warm."""

    deps: AuthzDeps

    def __post_init__(self) -> None:
        self.resolver = PermissionResolver(self.deps)

    async def __call__(self, principal: Principal, permissions: list[str]) -> dict[str, bool]:
        if not 1 <= len(permissions) <= MAX_BATCH:
            raise InvalidInput(f"Ask about 1 to {MAX_BATCH} permissions.", field="permissions")
        held = await self.resolver.names(principal)
        return {permission: permission in held for permission in permissions}
