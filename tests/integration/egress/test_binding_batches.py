"""The Squid helper's read of the ledger (BatchedEgressBindingLookup), on both backends: the
logins that arrive together share one read, each gets its own user's address, and nothing is
cached: a teardown committed before a login arrives is seen by that very login."""

import asyncio
import uuid
from datetime import UTC, datetime

from sqlalchemy import event

from adapters.storage.egress_binding_batches import BatchedEgressBindingLookup
from adapters.storage.egress_repository import SqlEgressBindingLookup
from application.egress_ledger import start_teardown_of
from domain.egress import SYSTEM
from tests.integration.egress.world import EgressWorld


async def allocated(world: EgressWorld, count: int) -> dict[uuid.UUID, str]:
    await world.ledger.seed(await world.provider.owned())
    held = {}
    for user in await world.users(count):
        allocation = await world.ledger.allocate(user, SYSTEM, "test")
        assert allocation.address is not None
        held[user] = allocation.address.address
    return held


async def test_logins_arriving_together_share_one_read_and_each_gets_its_own_address(
    world: EgressWorld,
) -> None:
    held = await allocated(world, 3)
    stranger = uuid.uuid4()
    reads: list[str] = []

    def listener(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            reads.append(statement)

    event.listen(world.engine.sync_engine, "before_cursor_execute", listener)
    try:
        lookup = BatchedEgressBindingLookup(world.engine)
        asked = [*held, stranger] * 20
        answers = await asyncio.gather(*(lookup.live_address(user) for user in asked))
    finally:
        event.remove(world.engine.sync_engine, "before_cursor_execute", listener)
    assert answers == [held.get(user) for user in asked]
    assert len(reads) == 1
    # The same answers as the ledger's own one-read-per-call lookup.
    plain = SqlEgressBindingLookup(world.engine)
    assert [await plain.live_address(u) for u in [*held, stranger]] == [*held.values(), None]


async def test_a_teardown_committed_before_a_login_is_seen_by_that_login(world: EgressWorld) -> None:
    held = await allocated(world, 2)
    alice, bob = list(held)
    lookup = BatchedEgressBindingLookup(world.engine)
    assert await lookup.live_address(alice) == held[alice]
    async with world.ports.uow() as uow:
        assert await start_teardown_of(uow, alice, datetime.now(UTC), SYSTEM, "test teardown")
        await uow.commit()
    # Straight after the commit, in the same process that answered a moment ago: no cache.
    assert await lookup.live_address(alice) is None
    assert await lookup.live_address(bob) == held[bob]


async def test_a_failed_read_fails_every_login_of_its_batch(world: EgressWorld) -> None:
    held = await allocated(world, 2)
    lookup = BatchedEgressBindingLookup(world.engine)

    def broken(*args: object) -> None:
        raise RuntimeError("the database went away")

    event.listen(world.engine.sync_engine, "before_cursor_execute", broken)
    try:
        outcomes = await asyncio.gather(*(lookup.live_address(u) for u in held), return_exceptions=True)
    finally:
        event.remove(world.engine.sync_engine, "before_cursor_execute", broken)
    assert all(isinstance(o, Exception) for o in outcomes)  # the helper answers BH: Squid denies
    assert [await lookup.live_address(u) for u in held] == list(held.values())


async def test_a_paused_or_closed_holder_is_refused_at_once_and_an_unpaused_one_again_admitted(
    world: EgressWorld,
) -> None:
    held = await allocated(world, 2)
    paused, closed = list(held)
    await world.set_user(paused, status="paused")
    await world.set_user(closed, status="closed")
    for lookup in (BatchedEgressBindingLookup(world.engine), SqlEgressBindingLookup(world.engine)):
        # Before the job tears anything down: the address is still allocated in the ledger.
        assert await lookup.live_address(paused) is None
        assert await lookup.live_address(closed) is None
    await world.set_user(paused, status="active")  # the pause kept the address
    assert await BatchedEgressBindingLookup(world.engine).live_address(paused) == held[paused]
