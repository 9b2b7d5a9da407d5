"""The egress ledger's tests run on both backends: SQLite, and PostgreSQL reached as the
unprivileged service role (its grants must cover the ledger's tables)."""

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.database import create_engine
from tests.egress_doubles import FixedPool
from tests.integration.egress.seed import pool
from tests.integration.egress.world import EgressWorld


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "app_pg_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
async def world_engine(storage_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(storage_url, pool_size=10)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def world(world_engine: AsyncEngine) -> EgressWorld:
    return EgressWorld.wire(world_engine, FixedPool(pool(3)))
