"""Exclusivity under contention, on real databases: many allocations at once never share an
address nor block each other into a false "pool exhausted"; a teardown or a closure racing a
re-allocation of the same user never leaves them two live addresses, or one after closure."""

import asyncio
import uuid
from collections import Counter

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.database import create_engine
from adapters.storage.tables import egress_addresses, users
from application.egress_ledger import start_teardown_of
from domain.egress import SYSTEM, EgressState
from domain.users import UserStatus
from tests.egress_doubles import FixedPool
from tests.integration.egress.seed import pool
from tests.integration.egress.world import EgressWorld


@pytest.mark.postgres
async def test_200_parallel_allocations_over_50_addresses_give_50_exclusive_bindings(app_pg_url: str) -> None:
    # As many connections as the shared server can spare; 200 allocations queue over them.
    engine = create_engine(app_pg_url, pool_size=20)
    try:
        world = EgressWorld.wire(engine, FixedPool(pool(50)))  # seeded lazily, concurrently
        people = await world.users(200)
        outcomes = await asyncio.gather(*(world.ledger.allocate(u, SYSTEM, "burst") for u in people))
    finally:
        await engine.dispose()
    engine = create_engine(app_pg_url, pool_size=2)
    try:
        world = EgressWorld.wire(engine, FixedPool(pool(50)))
        rows = await world.ledger_rows()
        async with world.ports.uow() as uow:
            waiting = await uow.egress.waiting()
    finally:
        await engine.dispose()
    served = [(u, o.address.address) for u, o in zip(people, outcomes, strict=True) if o.address is not None]
    exhausted = [o for o in outcomes if o.address is None]
    assert len(served) == 50
    assert len({address for _, address in served}) == 50  # distinct
    assert len({user for user, _ in served}) == 50
    assert len(exhausted) == 150 and all(not o.refused and not o.new for o in exhausted)
    # The ledger agrees: every address allocated to the one user that was told so.
    assert {a: (EgressState.ALLOCATED, u) for u, a in served} == rows
    assert len(waiting) == 150 and {w.user_id for w in waiting}.isdisjoint(u for u, _ in served)


async def test_many_allocations_for_one_user_give_them_one_address(world: EgressWorld) -> None:
    (user,) = await world.users(1)
    outcomes = await asyncio.gather(*(world.ledger.allocate(user, SYSTEM, "double click") for _ in range(12)))
    addresses = {o.address.address for o in outcomes if o.address is not None}
    assert len(addresses) == 1 and sum(o.new for o in outcomes) == 1
    held = [a for a, (state, _) in (await world.ledger_rows()).items() if state is EgressState.ALLOCATED]
    assert held == list(addresses)


async def _live_rows(engine: AsyncEngine, user_id: object) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(egress_addresses.c.address).where(
                (egress_addresses.c.user_id == user_id) & (egress_addresses.c.state == "allocated")
            )
        )
        return [r.address for r in rows]


async def test_a_teardown_racing_a_re_allocation_of_the_same_user_keeps_exclusivity(
    world_engine: AsyncEngine,
) -> None:
    world = EgressWorld.wire(world_engine, FixedPool(pool(40)))
    (user,) = await world.users(1)
    first = await world.ledger.allocate(user, SYSTEM, "start")
    assert first.address is not None
    told: Counter[str] = Counter()
    for _ in range(15):

        async def tear_down() -> None:
            async with world.ports.uow() as uow:
                await start_teardown_of(uow, user, world.clock.now(), SYSTEM, "released")
                await uow.commit()

        _, allocation = await asyncio.gather(tear_down(), world.ledger.allocate(user, SYSTEM, "re-allocate"))
        live = await _live_rows(world_engine, user)
        assert len(live) <= 1
        if allocation.address is not None:
            told[allocation.address.address] += 1
            # Either it won (and the teardown then took it) or it came after (and holds it).
            state = (await world.ledger_rows())[allocation.address.address]
            assert state in ((EgressState.ALLOCATED, user), (EgressState.DRAINING, user))
        rows = await world.ledger_rows()
        assert all((state is EgressState.AVAILABLE) == (holder is None) for state, holder in rows.values())
    # Nothing lost: every address is in exactly one state, and the pool is whole.
    assert len(await world.ledger_rows()) == 40


async def test_a_closure_racing_an_allocation_never_leaves_the_closed_account_an_address(
    world_engine: AsyncEngine,
) -> None:
    world = EgressWorld.wire(world_engine, FixedPool(pool(40)))
    people = await world.users(12)
    for user in people:

        async def close(user: uuid.UUID = user) -> None:
            # As the closure pipeline does: the account closed in one commit, the teardown later.
            async with world_engine.begin() as connection:
                await connection.execute(
                    update(users).where(users.c.id == user).values(status=str(UserStatus.CLOSED))
                )
            async with world.ports.uow() as uow:
                await start_teardown_of(uow, user, world.clock.now(), SYSTEM, "account closed")
                await uow.commit()

        await asyncio.gather(close(), world.ledger.allocate(user, SYSTEM, "paying"))
        assert await _live_rows(world_engine, user) == []


@pytest.mark.postgres
async def test_an_allocation_skips_an_address_another_transaction_holds_instead_of_waiting(
    app_pg_url: str,
) -> None:
    engine = create_engine(app_pg_url, pool_size=4)
    try:
        world = EgressWorld.wire(engine, FixedPool(pool(2)))
        await world.ledger.seed(pool(2))
        first, second = await world.users(2)
        async with world.ports.uow() as holding:
            held = await holding.egress.pick_available()  # locked until this block ends
            assert held is not None
            # Without SKIP LOCKED this would wait for the block above, which waits for it.
            allocation = await asyncio.wait_for(
                world.ledger.allocate(second, SYSTEM, "meanwhile"), timeout=10
            )
            assert allocation.address is not None and allocation.address.address != held.address
        after = await world.ledger.allocate(first, SYSTEM, "after")
        assert after.address is not None and after.address.address == held.address
    finally:
        await engine.dispose()
