"""The caller's own account, current organisation and memberships."""

from dataclasses import dataclass

from application.errors import NotAuthenticated
from application.identity import IdentityDeps
from application.use_cases.sessions import Principal
from domain.orgs import Membership, Organisation
from domain.users import User


@dataclass(frozen=True)
class Profile:
    user: User
    current_org: Organisation
    memberships: list[tuple[Membership, Organisation]]


@dataclass
class GetProfile:
    deps: IdentityDeps

    async def __call__(self, principal: Principal) -> Profile:
        cached: Profile | None = self.deps.profiles.get(principal.user_id, principal.org_id)
        if cached is not None:
            return cached
        async with self.deps.uow() as uow:
            user = await uow.users.get(principal.user_id)
            if user is None:
                raise NotAuthenticated()
            memberships = await uow.orgs.memberships_of(user.id)
        current = next((org for m, org in memberships if org.id == principal.org_id), None)
        if current is None:
            raise NotAuthenticated("You are no longer a member of this organisation.")
        profile = Profile(user, current, memberships)
        self.deps.profiles.put(principal.user_id, principal.org_id, profile)
        return profile
