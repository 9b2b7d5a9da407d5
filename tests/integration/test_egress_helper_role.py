"""The egress host's database role (`bulwark db grant-egress-helper-role`) against real
PostgreSQL: the Squid helper's and render-squid's reads work with it, and nothing else does, so
a compromised proxy host can neither rewrite the ledger nor read anybody's data."""

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.database import create_engine
from adapters.storage.egress_binding_batches import BatchedEgressBindingLookup
from adapters.storage.egress_repository import SqlEgressBindingLookup
from adapters.storage.service_role import grant_egress_helper_role
from domain.egress import SYSTEM
from tests.egress_doubles import FixedPool
from tests.integration.egress.seed import pool
from tests.integration.egress.world import EgressWorld


@pytest.fixture
async def owner(fresh_pg_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(fresh_pg_url, pool_size=2)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_the_helper_role_reads_live_addresses_and_nothing_else(
    owner: AsyncEngine, fresh_pg_url: str
) -> None:
    world = EgressWorld.wire(owner, FixedPool(pool(3)))
    await world.ledger.seed(await world.provider.owned())
    (user,) = await world.users(1)
    allocation = await world.ledger.allocate(user, SYSTEM, "paying")
    assert allocation.address is not None
    role = f"bulwark_egress_{uuid.uuid4().hex[:8]}"
    assert await grant_egress_helper_role(owner, role) is True
    assert await grant_egress_helper_role(owner, role) is False
    helper = create_engine(make_url(fresh_pg_url).set(username=role).render_as_string(False), pool_size=1)
    try:
        assert await BatchedEgressBindingLookup(helper).live_address(user) == allocation.address.address
        assert await SqlEgressBindingLookup(helper).live_address(user) == allocation.address.address
        assert await SqlEgressBindingLookup(helper).held_addresses() == [a.address for a in pool(3)]
        for statement in (
            "SELECT email FROM users",
            "SELECT count(*) FROM sessions",
            "SELECT count(*) FROM broker_connections",
            "SELECT provider_ref FROM egress_addresses",
            "UPDATE egress_addresses SET user_id = NULL",
            "INSERT INTO egress_waiting (user_id, since, attempt_id, attempts, last_error) "
            "VALUES (gen_random_uuid(), now(), gen_random_uuid(), 0, '')",
            "UPDATE users SET status = 'active'",
        ):
            with pytest.raises(DBAPIError, match="permission denied"):
                async with helper.begin() as conn:
                    await conn.execute(text(statement))
    finally:
        await helper.dispose()
        async with owner.begin() as conn:
            await conn.execute(text(f'DROP OWNED BY "{role}"'))
            await conn.execute(text(f'DROP ROLE "{role}"'))
