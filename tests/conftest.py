"""Shared fixtures: real backends.

PostgreSQL and Redis come from BULWARK_TEST_DATABASE_URL / BULWARK_TEST_REDIS_URL, else the local
servers. Each test run gets its own PostgreSQL database (created from the server, dropped at the
end) and its own Redis key namespace, so runs never see each other's data. When a server does not
answer, its tests are skipped with the reason shown -- except under CI=true, where that fails."""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage import migrations
from adapters.storage.database import create_engine
from adapters.storage.service_role import grant_service_role

# The real OpenID provider for the SSO tests: its `oidc_provider` fixture, available everywhere.
pytest_plugins = ["tests.oidc_harness"]

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(what: str, error: BaseException) -> None:
    message = f"{what} is not reachable ({error.__class__.__name__}: {error})"
    if IN_CI:
        pytest.fail(f"{message}; under CI=true a missing server is a failure", pytrace=False)
    pytest.skip(message)


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _create_database(base_url: str, name: str, template: str | None = None) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(base_url), timeout=5)
    try:
        suffix = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{suffix}')
    finally:
        await conn.close()


async def _drop_database(base_url: str, name: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(base_url), timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_base_url() -> str:
    url = os.environ.get("BULWARK_TEST_DATABASE_URL", DEFAULT_PG)
    try:
        asyncio.run(_drop_database(url, "bulwark_probe_never_exists"))
    except Exception as error:
        _unavailable("PostgreSQL", error)
    return url


@pytest.fixture(scope="session")
def pg_template(pg_base_url: str) -> Iterator[str]:
    """A migrated database that per-test databases are cloned from."""
    name = f"bulwark_tpl_{uuid.uuid4().hex[:10]}"
    asyncio.run(_create_database(pg_base_url, name))
    url = make_url(pg_base_url).set(database=name).render_as_string(hide_password=False)
    try:
        migrations.upgrade(url)
        yield name
    finally:
        asyncio.run(_drop_database(pg_base_url, name))


@pytest.fixture(scope="session")
def pg_url(pg_base_url: str, pg_template: str) -> Iterator[str]:
    """One migrated PostgreSQL database shared by the whole run (tests use unique data)."""
    name = f"bulwark_run_{uuid.uuid4().hex[:10]}"
    asyncio.run(_create_database(pg_base_url, name, template=pg_template))
    try:
        yield make_url(pg_base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_drop_database(pg_base_url, name))


@pytest.fixture(scope="module")
def module_pg_url(pg_base_url: str, pg_template: str) -> Iterator[str]:
    """A migrated PostgreSQL database of one test module's own: for servers started with a
    keyring of their own, which cannot open the data keys other tests' keyrings wrapped in the
    shared database."""
    name = f"bulwark_m_{uuid.uuid4().hex[:10]}"
    asyncio.run(_create_database(pg_base_url, name, template=pg_template))
    try:
        yield make_url(pg_base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_drop_database(pg_base_url, name))


@pytest.fixture
def fresh_pg_url(pg_base_url: str, pg_template: str) -> Iterator[str]:
    """A migrated PostgreSQL database of this test's own (for tests that need it empty)."""
    name = f"bulwark_t_{uuid.uuid4().hex[:10]}"
    asyncio.run(_create_database(pg_base_url, name, template=pg_template))
    try:
        yield make_url(pg_base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_drop_database(pg_base_url, name))


APP_ROLE = "bulwark_app_test"


async def _grant_app_role(url: str) -> None:
    """The service's own role, as `bulwark db grant-service-role` makes it in production: no
    superuser, no BYPASSRLS, not the tables' owner -- so row-level security applies."""
    engine = create_engine(url, pool_size=1)
    try:
        await grant_service_role(engine, APP_ROLE)
    finally:
        await engine.dispose()


@pytest.fixture
def app_pg_url(fresh_pg_url: str) -> str:
    """A fresh migrated database, reached as the unprivileged service role."""
    asyncio.run(_grant_app_role(fresh_pg_url))
    return make_url(fresh_pg_url).set(username=APP_ROLE, password=None).render_as_string(hide_password=False)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bulwark.sqlite3'}"
    migrations.upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Runs a test once per storage backend, each with an empty migrated database."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("fresh_pg_url"))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=5)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("BULWARK_TEST_REDIS_URL", DEFAULT_REDIS)

    async def probe() -> None:
        client = aioredis.from_url(url, socket_connect_timeout=2)
        try:
            await client.ping()
        finally:
            await client.aclose()

    try:
        asyncio.run(probe())
    except Exception as error:
        _unavailable("Redis", error)
    return url


@pytest.fixture
def redis_namespace() -> str:
    """Keys of this test only: parallel runs and tests never share counters."""
    return f"bulwark-test:{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis_client(redis_url: str, redis_namespace: str) -> AsyncIterator[aioredis.Redis]:
    """A client for the test's own Redis work; at the end it deletes this test's keys (never a
    flush). A blocking pool, as in production: bursts wait for a connection instead of failing."""
    client = aioredis.Redis(
        connection_pool=aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=32)
    )
    try:
        yield client
    finally:
        keys = [key async for key in client.scan_iter(match=f"{redis_namespace}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
