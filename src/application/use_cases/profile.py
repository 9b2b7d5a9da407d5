"""The caller's own account, current organisation and memberships."""

import asyncio
from dataclasses import dataclass, field
from uuid import UUID

from application.errors import NotAuthenticated
from application.identity import IdentityDeps, RequestContext
from application.text_input import validated_text
from application.use_cases.accounts import DISPLAY_NAME_MAX
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
    # One load per (user, org, cache generation) at a time: when a cached profile expires, the
    # requests waiting for it share one trip to the database instead of each making its own. A
    # change that drops cached profiles starts a new generation, so later requests never join a
    # load that may have read the state before it.
    _loading: dict[tuple[UUID, UUID, int], "asyncio.Future[Profile]"] = field(default_factory=dict)

    async def __call__(self, principal: Principal) -> Profile:
        profiles = self.deps.profiles
        while True:
            cached: Profile | None = profiles.get(principal.user_id, principal.org_id)
            if cached is not None:
                return cached
            key = (principal.user_id, principal.org_id, profiles.generation)
            pending = self._loading.get(key)
            if pending is None:
                return await self._load_once(key, principal)
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this request itself was cancelled
                # The request that was loading it was cancelled: look again (another waiter
                # may have started a load meanwhile) and load it here if nobody has.

    async def _load_once(self, key: tuple[UUID, UUID, int], principal: Principal) -> Profile:
        future: asyncio.Future[Profile] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            profile = await self._load(principal, generation=key[2])
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # marked retrieved: with nobody waiting it is not a logged leak
            raise
        else:
            future.set_result(profile)
            return profile
        finally:
            del self._loading[key]  # ours: a load starts only where no entry is

    async def _load(self, principal: Principal, generation: int) -> Profile:
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
        self.deps.profiles.put(principal.user_id, principal.org_id, profile, generation)
        return profile


@dataclass
class UpdateProfile:
    """What a user changes about themself: today their display name, validated as at registration."""

    deps: IdentityDeps

    async def __call__(self, principal: Principal, display_name: str, ctx: RequestContext) -> None:
        name = validated_text(display_name, "display_name", "Display name", DISPLAY_NAME_MAX)
        async with self.deps.uow() as uow:
            user = await uow.users.get(principal.user_id)
            if user is None:
                raise NotAuthenticated()
            before = user.display_name
            if before != name:
                user.display_name = name
                user.updated_at = self.deps.clock.now()
                await uow.users.update(user)
                await uow.audit.append(
                    ctx.event(
                        "user.profile_updated",
                        actor=user.id,
                        org=principal.org_id,
                        target_type="user",
                        target_id=user.id,
                        before={"display_name": before},
                        after={"display_name": name},
                    )
                )
                await uow.commit()
        self.deps.profiles.forget_user(principal.user_id)  # /me shows the new name at once
