"""The caller's own account, current organisation and memberships."""

import asyncio
from dataclasses import dataclass, field
from uuid import UUID

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
    # One load per (user, org) at a time: when a cached profile expires, the requests that were
    # waiting for it share one trip to the database instead of each making its own.
    _loading: dict[tuple[UUID, UUID], "asyncio.Future[Profile]"] = field(default_factory=dict)

    async def __call__(self, principal: Principal) -> Profile:
        cached: Profile | None = self.deps.profiles.get(principal.user_id, principal.org_id)
        if cached is not None:
            return cached
        key = (principal.user_id, principal.org_id)
        pending = self._loading.get(key)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this request itself was cancelled
                # The request that was loading it was cancelled: load it here instead.
        return await self._load_once(key, principal)

    async def _load_once(self, key: tuple[UUID, UUID], principal: Principal) -> Profile:
        future: asyncio.Future[Profile] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            profile = await self._load(principal)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as error:
            future.set_exception(error)
            future.exception()  # marked retrieved: with nobody waiting it is not a logged leak
            raise
        else:
            future.set_result(profile)
            return profile
        finally:
            del self._loading[key]

    async def _load(self, principal: Principal) -> Profile:
        # A transaction even though it only reads: memberships are behind row-level security,
        # which is declared per transaction.
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
