"""The SSO use cases over real storage (SQLite, and PostgreSQL as the unprivileged service role),
with a fake provider: the races the fakes only model -- a state claimed by two callbacks at once,
two unlinks of an account's two identities at once, two first sign-ins of one identity at once."""

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from adapters.storage.database import create_engine
from adapters.storage.sso_repository import SqlSsoRepository
from adapters.storage.tables import sso_identities, users
from adapters.storage.unit_of_work import SqlUnitOfWorkFactory
from application.errors import Conflict
from application.sso_ports import SsoCallbackFailed, SsoPorts
from application.use_cases.sessions import Principal
from application.use_cases.sso_identities import ListIdentities, UnlinkIdentity
from application.use_cases.sso_sign_in import CompleteSsoSignIn, StartSsoSignIn
from domain.sso import SsoClaims, SsoProvider
from tests.unit.fakes import make_fakes
from tests.unit.test_sso_use_cases import CTX, FakeOidcClient, World, google


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "app_pg_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
async def world(storage_url: str) -> AsyncIterator[World]:
    engine = create_engine(storage_url, pool_size=5)
    fakes = make_fakes()
    fakes.deps = dataclasses.replace(fakes.deps, uow=SqlUnitOfWorkFactory(engine))
    clients = {p: FakeOidcClient() for p in (SsoProvider.GOOGLE, SsoProvider.AZURE)}
    try:
        yield World(fakes, clients, SsoPorts(identity=fakes.deps, clients=clients))  # type: ignore[arg-type]
    finally:
        await engine.dispose()


async def started(world: World, claims: SsoClaims) -> tuple[str, str]:
    world.clients[SsoProvider.GOOGLE].claims = claims
    start = await StartSsoSignIn(world.ports)("google", None, CTX)
    return parse_qs(urlsplit(start.authorization_url).query)["state"][0], start.browser_binding


async def callback(world: World, state: str, binding: str) -> object:
    try:
        return await CompleteSsoSignIn(world.ports)(
            "google", code="c", state=state, error=None, iss=None, browser_binding=binding, ctx=CTX
        )
    except SsoCallbackFailed as failed:
        return failed.code


async def count(world: World, table: object) -> int:
    engine = world.fakes.deps.uow.engine  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]


async def test_a_state_is_claimed_by_one_of_two_simultaneous_callbacks(world: World) -> None:
    state, binding = await started(world, google(email="race@example.com"))
    results = await asyncio.gather(callback(world, state, binding), callback(world, state, binding))
    assert sorted(type(r).__name__ for r in results) == ["SsoSignedIn", "str"]
    assert "invalid_state" in results
    assert world.clients[SsoProvider.GOOGLE].completed.__len__() == 1  # one code exchange only


async def test_two_first_sign_ins_of_one_identity_make_one_account(world: World) -> None:
    first = await started(world, google(email="twice@example.com", sub="same"))
    second = await started(world, google(email="twice@example.com", sub="same"))
    results = await asyncio.gather(callback(world, *first), callback(world, *second))
    assert "SsoSignedIn" in [type(r).__name__ for r in results]
    assert await count(world, users) == 1 and await count(world, sso_identities) == 1


async def test_two_simultaneous_unlinks_never_leave_an_sso_only_account_without_a_way_in(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    await callback(world, *await started(world, google(email="solo@example.com", sub="g-a")))
    await callback(world, *await started(world, google(email="solo@example.com", sub="g-b")))
    engine = world.fakes.deps.uow.engine  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        user_id = (await conn.execute(select(users.c.id))).scalar_one()
    now = world.fakes.clock.now()
    principal = Principal(user_id, user_id, user_id, "user", now)
    both = await ListIdentities(world.ports)(principal)
    assert len(both) == 2

    async def unlink(identity_id: object) -> str:
        try:
            await UnlinkIdentity(world.ports)(principal, identity_id, CTX)  # type: ignore[arg-type]
        except Conflict as refused:
            return refused.code
        return "unlinked"

    # Force the race: each unlink, having read the identities, waits (up to half a second) for
    # the other to have read them too. Without the row lock both read two and both unlink.
    barrier = asyncio.Barrier(2)
    read = SqlSsoRepository.identities_of

    async def racing_read(self: SqlSsoRepository, user_id: object, *, lock: bool = False) -> object:
        found = await read(self, user_id, lock=lock)  # type: ignore[arg-type]
        with contextlib.suppress(TimeoutError, asyncio.BrokenBarrierError):
            await asyncio.wait_for(barrier.wait(), 0.5)
        return found

    monkeypatch.setattr(SqlSsoRepository, "identities_of", racing_read)
    results = await asyncio.gather(*(unlink(identity.id) for identity in both))
    assert sorted(results) == ["last_sign_in_method", "unlinked"]
    assert len(await ListIdentities(world.ports)(principal)) == 1
