"""The egress ledger on both backends: the database itself refuses a second live address for a
user and an address that is both somebody's and in the pool; transitions are conditional on the
state they were computed from and recorded with who and why."""

from datetime import timedelta

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.egress_repository import SqlEgressBindingLookup
from adapters.storage.tables import egress_addresses
from adapters.storage.unit_of_work import SqlUnitOfWorkFactory
from application.ports.egress_repository import EgressSearch, EgressUserAlreadyBound
from domain import egress
from domain.egress import SYSTEM, EgressActor, EgressState
from tests.integration.egress.seed import NOW, pool, seed_pool, seed_users


async def _allocate(engine: AsyncEngine, user_id: object) -> egress.EgressAddress:
    async with SqlUnitOfWorkFactory(engine)() as uow:
        picked = await uow.egress.pick_available()
        assert picked is not None
        move = egress.allocate(picked, user_id, NOW, SYSTEM, "test")  # type: ignore[arg-type]
        assert move is not None and await uow.egress.apply(move)
        await uow.commit()
    return move.after


async def test_a_transition_is_written_once_and_recorded_with_who_and_why(world_engine: AsyncEngine) -> None:
    (user,) = await seed_users(world_engine, 1)
    await seed_pool(world_engine, pool(2))
    held = await _allocate(world_engine, user)
    admin = EgressActor("admin", user)
    move = egress.start_teardown(held, NOW + timedelta(minutes=1), admin, "released by an admin")
    assert move is not None
    uow_factory = SqlUnitOfWorkFactory(world_engine)
    async with uow_factory() as uow:
        assert await uow.egress.apply(move)
        # The same transition again (a retry computed from the old read) changes nothing.
        assert not await uow.egress.apply(move)
        await uow.commit()
    async with uow_factory() as uow:
        now_held = await uow.egress.get(held.address)
        history = await uow.egress.history(held.address, 10)
        assert await uow.egress.live_for_user(user) is None
    assert now_held is not None and now_held.state is EgressState.DRAINING and now_held.user_id == user
    assert [(h.from_state, h.to_state, h.actor, h.reason) for h in history] == [
        (EgressState.ALLOCATED, EgressState.DRAINING, f"admin:{user}", "released by an admin"),
        (EgressState.AVAILABLE, EgressState.ALLOCATED, "system", "test"),
        (None, EgressState.AVAILABLE, "system", "seeded by the test"),
    ]
    assert await SqlEgressBindingLookup(world_engine).live_address(user) is None


async def test_the_database_refuses_a_second_live_address_for_one_user(world_engine: AsyncEngine) -> None:
    (user,) = await seed_users(world_engine, 1)
    await seed_pool(world_engine, pool(2))
    first = await _allocate(world_engine, user)
    async with SqlUnitOfWorkFactory(world_engine)() as uow:
        other = await uow.egress.pick_available()
        assert other is not None and other.address != first.address
        # The code's own check is bypassed on purpose: the constraint alone must refuse.
        move = egress.allocate(other, user, NOW, SYSTEM, "second")
        assert move is not None
        with pytest.raises(EgressUserAlreadyBound):
            await uow.egress.apply(move)
    assert await SqlEgressBindingLookup(world_engine).live_address(user) == first.address


async def test_the_database_refuses_an_address_both_held_and_in_the_pool(world_engine: AsyncEngine) -> None:
    (user,) = await seed_users(world_engine, 1)
    await seed_pool(world_engine, pool(1))
    async with world_engine.begin() as connection:
        with pytest.raises(IntegrityError):
            await connection.execute(update(egress_addresses).values(user_id=user))
    async with world_engine.begin() as connection:
        with pytest.raises(IntegrityError):
            await connection.execute(update(egress_addresses).values(state="allocated"))
    async with world_engine.begin() as connection:
        with pytest.raises(IntegrityError):
            await connection.execute(text("UPDATE egress_addresses SET state = 'borrowed'"))


async def test_seeding_twice_adds_nothing_and_search_filters(world_engine: AsyncEngine) -> None:
    users = await seed_users(world_engine, 2)
    await seed_pool(world_engine, pool(3))
    await seed_pool(world_engine, pool(3))
    await _allocate(world_engine, users[0])
    async with SqlUnitOfWorkFactory(world_engine)() as uow:
        assert len(await uow.egress.every()) == 3
        available = await uow.egress.search(EgressSearch(limit=10, state=EgressState.AVAILABLE))
        mine = await uow.egress.search(EgressSearch(limit=10, user_id=users[0]))
        waiting = await uow.egress.paying_without_address(frozenset({"pro"}), 10)
    assert len(available) == 2
    assert [a.user_id for a in mine] == [users[0]]
    assert waiting == [users[1]]
