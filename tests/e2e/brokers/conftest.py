"""Fixtures of the broker-connection and vault tests: the public API, the vault and cTrader's
simulator, on both backends."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.storage import migrations
from entrypoints.settings import Settings
from tests.ctrader_simulator import CtraderSimulator
from tests.e2e.broker_world import (
    CLIENT_ID,
    CLIENT_SECRET,
    BrokerWorld,
    PinnedClock,
    broker_settings,
    running_vault,
)
from tests.e2e.conftest import make_settings, start_service


@pytest.fixture
async def sim() -> AsyncIterator[CtraderSimulator]:
    async with CtraderSimulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as simulator:
        yield simulator


@pytest.fixture
def base_settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Settings, str]:
    """The settings, and the database URL of the tables' owner."""
    if backend == "embedded":
        settings = make_settings(tmp_path)
        migrations.upgrade(settings.effective_database_url)
        return settings, settings.effective_database_url
    app_url = request.getfixturevalue("app_pg_url")
    owner_url = request.getfixturevalue("fresh_pg_url")
    return make_settings(
        tmp_path, database_url=app_url, redis_url=request.getfixturevalue("redis_url")
    ), owner_url


@pytest.fixture
async def world(
    base_settings: tuple[Settings, str], sim: CtraderSimulator, redis_namespace: str
) -> AsyncIterator[BrokerWorld]:
    base, owner_url = base_settings
    settings = broker_settings(base, sim)
    clock = PinnedClock()
    async for service in start_service(settings, redis_namespace, clock=clock):
        async with running_vault(settings, redis_namespace, clock) as vault:
            yield BrokerWorld(service, vault, sim, settings, clock, redis_namespace, owner_url)
