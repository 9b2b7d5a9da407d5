"""After a PostgreSQL restart, the hot statements sent through asyncpg directly (the refresh) meet
each stale pooled connection at most once in all, not once per connection: the first lost
connection expires the whole pool, as SQLAlchemy does on a disconnect."""

import asyncio

import pytest
from sqlalchemy import literal_column, select

from adapters.storage.database import create_engine
from adapters.storage.driver_statement import DriverStatement
from application.errors import DependencyUnavailable
from tests.fault_servers import PrivatePostgres

pytestmark = pytest.mark.slow

POOL = 4


async def test_a_restart_costs_the_raw_statement_one_failure_not_one_per_pooled_connection(
    fault_pg: PrivatePostgres, fault_db: str
) -> None:
    engine = create_engine(fault_db, pool_size=POOL)
    slow = DriverStatement(select(literal_column("pg_sleep(0.2)")))
    quick = DriverStatement(select(literal_column("1")))
    try:
        await asyncio.gather(*(slow.fetchrow(engine, {}) for _ in range(POOL)))  # POOL connections pooled
        await asyncio.to_thread(fault_pg.restart, "fast")
        failures = 0
        for _ in range(POOL):
            try:
                await quick.fetchrow(engine, {})
            except DependencyUnavailable:
                failures += 1
        assert failures == 1
    finally:
        await engine.dispose()
