"""A ledger write computed from an old read never lands on the address as it is now (both
storage backends): the job's release, computed for the provider id it listed, leaves the address
alone once the provider has re-issued it under a new id (another run released it meanwhile), and a
transition or grace computed for one holder does not apply once the row names the next holder in
the same state."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from application.ports.egress_provider import ProviderAddress
from domain import egress
from domain.egress import SYSTEM, EgressAddress, EgressState
from tests.egress_doubles import FixedPool
from tests.integration.egress.seed import pool
from tests.integration.egress.world import EgressWorld

DAY = timedelta(days=1)


@dataclass
class ReissuingProvider:
    """A cloud provider (grows, one id per address it hands out, idempotent by label) that, like
    Hetzner, deletes by id and may hand a deleted address out again under a new id."""

    name: str = "cloud"
    grows: bool = True
    held: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (address, label)
    freed: list[str] = field(default_factory=list)  # deleted addresses, handed out again first
    ids: int = 0

    async def owned(self) -> Sequence[ProviderAddress]:
        return [
            ProviderAddress(address, ref, {"bulwark": label}) for ref, (address, label) in self.held.items()
        ]

    async def acquire(self, label: str) -> ProviderAddress:
        for ref, (address, known) in self.held.items():
            if known == label:
                return ProviderAddress(address, ref, {"bulwark": label})  # adopted
        self.ids += 1
        address = self.freed.pop(0) if self.freed else f"127.0.0.{99 + self.ids}"
        ref = f"ip-{self.ids}"
        self.held[ref] = (address, label)
        return ProviderAddress(address, ref, {"bulwark": label})

    async def attach(self, address: ProviderAddress) -> None:
        return None

    async def detach(self, address: ProviderAddress) -> None:
        return None

    async def release(self, address: ProviderAddress) -> bool:
        gone = self.held.pop(address.provider_ref, None)  # by id; already gone counts as released
        if gone is not None:
            self.freed.append(gone[0])
        return True


async def row(world: EgressWorld, address: str) -> EgressAddress:
    async with world.ports.uow() as uow:
        found = await uow.egress.get(address)
    assert found is not None
    return found


async def test_a_release_for_an_old_provider_id_leaves_the_address_reissued_under_a_new_one(
    world_engine: AsyncEngine,
) -> None:
    provider = ReissuingProvider()
    world = EgressWorld.wire(world_engine, provider)
    alice, bob = await world.users(2)
    first = (await world.ledger.allocate(alice, SYSTEM, "paying")).address
    assert first is not None
    address, alices_id = first.address, first.provider_ref
    await world.close(alice)
    interleaved: list[str] = []

    async def another_run_releases_and_the_provider_reissues(step: str) -> None:
        # Between this run's release at the provider and its record in the ledger:
        if step != "release confirmed" or interleaved:
            return
        interleaved.append(step)
        # another run (a timer's `bulwark jobs run`) releases the same address, records it, and
        # serves Bob, who waits for one: the provider hands the address out again, under a new id.
        nested = await world.job()
        assert (nested.released, nested.allocated) == (1, 1)
        bobs = await row(world, address)
        assert (bobs.state, bobs.user_id) == (EgressState.ALLOCATED, bob)
        assert bobs.provider_ref != alices_id
        # Then Bob's account closes: his teardown begins.
        await world.close(bob)
        await world.ledger.follow_plan(bob, SYSTEM)

    world.ports.after_step = another_run_releases_and_the_provider_reissues
    report = await world.job()
    assert interleaved, "the job never reached its release record"
    # This run's release was for Alice's id: Bob's address is still draining, his detach not yet
    # confirmed, and still held (and billed) at the provider under its new id.
    assert report.released == 0
    now = await row(world, address)
    assert (now.state, now.user_id) == (EgressState.DRAINING, bob)
    assert now.provider_ref != alices_id
    assert [(a.address, a.provider_ref) for a in await provider.owned()] == [(address, now.provider_ref)]

    assert (await world.job()).released == 1  # the next run releases Bob's, by his id
    assert (await row(world, address)).state is EgressState.RELEASED
    assert await provider.owned() == []


async def test_a_transition_computed_for_one_holder_does_not_apply_to_the_next(
    world_engine: AsyncEngine,
) -> None:
    world = EgressWorld.wire(world_engine, FixedPool(pool(1)))
    alice, bob = await world.users(2)
    allocation = (await world.ledger.allocate(alice, SYSTEM, "paying")).address
    assert allocation is not None
    address = allocation.address
    stale = await row(world, address)  # read while Alice holds it
    # Alice leaves; after the teardown and the cooldown the same address is Bob's, allocated again.
    await world.close(alice)
    await world.job()
    world.clock.advance(8 * DAY)
    await world.job()
    assert (await world.ledger.allocate(bob, SYSTEM, "paying")).address is not None
    assert (await world.ledger_rows())[address] == (EgressState.ALLOCATED, bob)

    now = world.clock.now()
    teardown = egress.start_teardown(stale, now, SYSTEM, "computed for alice")
    assert teardown is not None
    async with world.ports.uow() as uow:
        assert not await uow.egress.apply(teardown)
        assert not await uow.egress.set_grace(stale, now + DAY, now, SYSTEM, "grace computed for alice")
        await uow.commit()
    held = await row(world, address)
    assert (held.state, held.user_id, held.grace_until) == (EgressState.ALLOCATED, bob, None)
    assert await world.live(bob) == address
    async with world.ports.uow() as uow:
        reasons = [h.reason for h in await uow.egress.history(address, 50)]
    assert not {"computed for alice", "grace computed for alice"} & set(reasons)


async def test_a_holders_guard_also_holds_in_draining(world_engine: AsyncEngine) -> None:
    """The same state with another holder, in teardown: Alice's confirmed detach is not Bob's."""
    world = EgressWorld.wire(world_engine, FixedPool(pool(1)))
    alice, bob = await world.users(2)
    world.gateway.confirm = False  # detaches wait: each teardown stays draining until told
    assert (await world.ledger.allocate(alice, SYSTEM, "paying")).address is not None
    await world.close(alice)
    await world.job()
    (address,) = (await world.ledger_rows()).keys()
    stale = await row(world, address)
    assert (stale.state, stale.user_id) == (EgressState.DRAINING, alice)
    world.gateway.confirm = True
    await world.job()
    world.clock.advance(8 * DAY)
    await world.job()
    world.gateway.confirm = False
    assert (await world.ledger.allocate(bob, SYSTEM, "paying")).address is not None
    await world.close(bob)
    await world.job()
    assert (await world.ledger_rows())[address] == (EgressState.DRAINING, bob)

    move = egress.detached(stale, world.clock.now(), world.ports.policy.cooldown)
    assert move is not None
    async with world.ports.uow() as uow:
        assert not await uow.egress.apply(move)
        await uow.commit()
    assert (await world.ledger_rows())[address] == (EgressState.DRAINING, bob)
