"""Each worker keeps BULWARK_DATABASE_POOL_SIZE connections to PostgreSQL open; a burst beyond it
opens as many again, and those close after it."""

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from entrypoints.composition import build_container
from tests.e2e.conftest import make_settings

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def test_the_pool_keeps_the_configured_connections(
    tmp_path: Path, fresh_pg_url: str, redis_url: str
) -> None:
    settings = make_settings(tmp_path, database_url=fresh_pg_url, redis_url=redis_url, database_pool_size=3)
    container = build_container(settings, redis_namespace="pool-test")
    try:
        engine = container.engine
        release = asyncio.Event()
        ready = 0

        async def hold() -> None:
            nonlocal ready
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
                ready += 1
                await release.wait()

        holders = [asyncio.create_task(hold()) for _ in range(5)]
        while ready < 5:
            await asyncio.sleep(0.01)
        assert engine.pool.checkedout() == 5  # type: ignore[attr-defined]
        release.set()
        await asyncio.gather(*holders)
        assert engine.pool.size() == 3  # type: ignore[attr-defined]
        assert engine.pool.checkedin() == 3  # type: ignore[attr-defined]  # the burst's two closed
    finally:
        await container.engine.dispose()


async def test_an_unreachable_database_is_dependency_unavailable_not_a_driver_error() -> None:
    """A refused connection (a server restarting) surfaces as the application's outage error,
    which the edge answers as 503 + Retry-After, on both ways the service reaches PostgreSQL:
    through SQLAlchemy and through the raw pooled connection of the hot statements."""
    from sqlalchemy import select

    from adapters.storage.database import create_engine
    from adapters.storage.driver_statement import DriverStatement
    from application.errors import DependencyUnavailable
    from tests.fault_servers import free_port

    engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing", pool_size=1)
    try:
        with pytest.raises(DependencyUnavailable) as refused:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        assert refused.value.retry_after >= 1
        with pytest.raises(DependencyUnavailable):
            await DriverStatement(select(text("1"))).fetchrow(engine, {})
    finally:
        await engine.dispose()


async def test_the_vaults_direct_read_of_an_unreachable_database_is_dependency_unavailable() -> None:
    import uuid

    from adapters.storage.database import create_engine
    from adapters.storage.vault_reader import SqlVaultReader
    from application.errors import DependencyUnavailable
    from tests.fault_servers import free_port

    engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing", pool_size=1)
    reader = SqlVaultReader(engine, pool_size=1)
    try:
        with pytest.raises(DependencyUnavailable):
            await reader.access_view(uuid.uuid4(), uuid.uuid4())
    finally:
        await reader.close()
        await engine.dispose()
