"""The org rules over real storage: random member, role and group operations by random actors,
through the use cases, on SQLite and on PostgreSQL reached as the unprivileged service role (so
row-level security and the org row's lock are real), checked after every step."""

import dataclasses
import random
from collections.abc import AsyncIterator

import pytest

from adapters.storage.database import create_engine
from adapters.storage.unit_of_work import SqlUnitOfWorkFactory
from tests.org_world import OrgWorld, RandomOperations, populate, wire
from tests.unit.fakes import make_fakes
from tests.unit.test_org_rules import mailed_token


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "app_pg_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
async def sql_world(storage_url: str) -> AsyncIterator[OrgWorld]:
    engine = create_engine(storage_url, pool_size=5)
    fakes = make_fakes()
    deps = dataclasses.replace(fakes.deps, uow=SqlUnitOfWorkFactory(engine))
    try:
        yield OrgWorld(deps, wire(deps), lambda address: mailed_token(fakes, address))
    finally:
        await engine.dispose()


@pytest.mark.parametrize("seed", [101, 202])
async def test_random_operations_keep_the_org_sound_on_real_storage(sql_world: OrgWorld, seed: int) -> None:
    rng = random.Random(seed)
    await populate(sql_world, rng)
    operations = RandomOperations(sql_world, rng)
    await operations.run(60)
    assert any(key.endswith(":ok") for key in operations.outcomes), operations.outcomes
    refusals = {"grant_exceeds_own", "org_admin_required", "permission_denied", "last_administrator"}
    assert any(key.split(":")[1] in refusals for key in operations.outcomes), operations.outcomes
