"""GET /me's use case: requests that miss the worker's profile cache together share one load."""

import asyncio
import dataclasses
import uuid
from typing import Any

import pytest

from application.errors import NotAuthenticated
from application.profile_cache import ProfileCache
from application.use_cases.profile import GetProfile
from application.use_cases.sessions import Principal
from tests.unit.fakes import Fakes, FakeUnitOfWorkFactory, make_fakes
from tests.unit.test_identity_use_cases import logged_in, principal_of


class SlowUnitsOfWork:
    """Units that take a turn of the event loop to open, so concurrent callers really overlap;
    `gate`, when set, holds every unit until it is released."""

    def __init__(self, inner: FakeUnitOfWorkFactory) -> None:
        self.inner = inner
        self.opened = 0
        self.gate: asyncio.Event | None = None

    def __call__(self, *, autocommit: bool = False) -> Any:
        outer = self

        class Slow:
            async def __aenter__(self) -> Any:
                outer.opened += 1
                await asyncio.sleep(0)
                if outer.gate is not None:
                    await outer.gate.wait()
                self.unit = outer.inner(autocommit=autocommit)
                return await self.unit.__aenter__()

            async def __aexit__(self, *exc: Any) -> None:
                await self.unit.__aexit__(*exc)

        return Slow()


async def uncached(fakes: Fakes) -> tuple[GetProfile, SlowUnitsOfWork, Principal]:
    _, session = await logged_in(fakes)
    principal = await principal_of(fakes, session.access.token)
    units = SlowUnitsOfWork(fakes.uow)
    # No cache at all: without sharing, every call would load on its own.
    deps = dataclasses.replace(fakes.deps, uow=units, profiles=ProfileCache(ttl_seconds=0))
    return GetProfile(deps), units, principal


@pytest.fixture
def fakes() -> Fakes:
    return make_fakes()


async def test_concurrent_misses_share_one_load(fakes: Fakes) -> None:
    get_profile, units, principal = await uncached(fakes)
    profiles = await asyncio.gather(*(get_profile(principal) for _ in range(8)))
    assert units.opened == 1
    assert all(p is profiles[0] for p in profiles)
    await get_profile(principal)  # once it is done, the next miss loads again
    assert units.opened == 2


async def test_a_failed_load_fails_every_waiter_and_is_not_remembered(fakes: Fakes) -> None:
    get_profile, units, principal = await uncached(fakes)
    stranger = dataclasses.replace(principal, org_id=uuid.uuid4())  # not a member there
    results = await asyncio.gather(*(get_profile(stranger) for _ in range(3)), return_exceptions=True)
    assert units.opened == 1
    assert all(isinstance(r, NotAuthenticated) for r in results)
    with pytest.raises(NotAuthenticated):
        await get_profile(stranger)
    assert units.opened == 2


async def test_a_waiter_loads_itself_when_the_loading_request_is_cancelled(fakes: Fakes) -> None:
    get_profile, units, principal = await uncached(fakes)
    units.gate = asyncio.Event()
    loader = asyncio.create_task(get_profile(principal))
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(get_profile(principal))
    await asyncio.sleep(0.01)
    loader.cancel()
    await asyncio.sleep(0.01)
    units.gate.set()
    profile = await waiter
    assert profile.user.id == principal.user_id
    assert loader.cancelled() and units.opened == 2


async def test_every_waiter_gets_a_profile_when_the_loading_request_is_cancelled(fakes: Fakes) -> None:
    get_profile, units, principal = await uncached(fakes)
    units.gate = asyncio.Event()
    loader = asyncio.create_task(get_profile(principal))
    await asyncio.sleep(0.01)
    waiters = [asyncio.create_task(get_profile(principal)) for _ in range(3)]
    await asyncio.sleep(0.01)
    loader.cancel()
    await asyncio.sleep(0.01)
    units.gate.set()
    profiles = await asyncio.gather(*waiters)
    assert all(p.user.id == principal.user_id for p in profiles)
    assert all(p is profiles[0] for p in profiles)  # the waiters shared the second load, too
    assert units.opened == 2
    assert get_profile._loading == {}


async def test_a_change_made_meanwhile_is_never_served_from_a_load_that_began_before_it(fakes: Fakes) -> None:
    _, session = await logged_in(fakes)
    principal = await principal_of(fakes, session.access.token)
    units = SlowUnitsOfWork(fakes.uow)
    cache: ProfileCache[Any] = ProfileCache(ttl_seconds=60)
    get_profile = GetProfile(dataclasses.replace(fakes.deps, uow=units, profiles=cache))
    units.gate = asyncio.Event()
    early = asyncio.create_task(get_profile(principal))
    await asyncio.sleep(0.01)
    cache.forget_user(principal.user_id)  # e.g. a role change committed in this worker
    late = asyncio.create_task(get_profile(principal))
    await asyncio.sleep(0.01)
    units.gate.set()
    early_profile, late_profile = await asyncio.gather(early, late)
    assert units.opened == 2  # the later request did not join the earlier load
    assert early_profile is not late_profile
    # Only what was read after the change is kept for the requests that follow.
    assert cache.get(principal.user_id, principal.org_id) is late_profile
