"""The ledger and the job with the real hetzner adapter against the loopback Hetzner API
simulator: what the issue asks of the provider, seen from the ledger's side (a create whose answer
was lost is adopted, a delete that fails leaves the address `draining` until a retry is
confirmed, an address created behind the ledger's back is a leak in the audit)."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.egress.hetzner.api_client import HetznerApiClient, RetryPolicy
from adapters.egress.hetzner.primary_ips import HetznerPrimaryIpProvider
from application.use_cases.egress_audit import AuditEgress
from domain.egress import SYSTEM, EgressState
from tests.hetzner_simulator import HetznerSimulator, SimServer
from tests.integration.egress.world import EgressWorld

TOKEN = "hc-TESTtoken-ledger-5e1d"
EGRESS_HOST = 4242
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.5, action_poll=0.01, action_timeout=5.0)


@pytest.fixture
async def sim() -> AsyncIterator[HetznerSimulator]:
    async with HetznerSimulator(token=TOKEN, servers=(SimServer(id=EGRESS_HOST),)) as simulator:
        yield simulator


def hetzner_world(engine: AsyncEngine, sim: HetznerSimulator) -> EgressWorld:
    api = HetznerApiClient(base_url=sim.base_url, token=TOKEN, retry=FAST)
    return EgressWorld.wire(
        engine, HetznerPrimaryIpProvider(api, server_id=EGRESS_HOST, datacenter="fsn1-dc14")
    )


async def test_a_lost_create_is_adopted_and_a_failing_delete_stays_draining_until_retried(
    world_engine: AsyncEngine, sim: HetznerSimulator
) -> None:
    world = hetzner_world(world_engine, sim)
    (user,) = await world.users(1)
    sim.lose_create_answers = 1
    allocation = await world.ledger.allocate(user, SYSTEM, "paying")
    # The create was carried out but unanswered: looked up by the attempt's label and adopted.
    assert allocation.address is not None and len(sim.primary_ips) == 1
    address = allocation.address.address
    assert sim.primary_ips[0]["ip"] == address and sim.primary_ips[0]["assignee_id"] == EGRESS_HOST
    assert (await world.ledger_rows())[address] == (EgressState.ALLOCATED, user)

    await world.close(user)
    sim.fail_deletes = 100
    report = await world.job()
    assert report.released == 0 and any(address in why for why in report.held_back)
    assert (await world.ledger_rows())[address] == (EgressState.DRAINING, user)
    assert [ip["ip"] for ip in sim.primary_ips] == [address]  # still billed, still ours to retry

    sim.fail_deletes = 0
    report = await world.job()
    assert report.released == 1 and sim.primary_ips == []
    assert (await world.ledger_rows())[address] == (EgressState.RELEASED, None)


async def test_an_address_created_behind_the_ledgers_back_is_a_leak(
    world_engine: AsyncEngine, sim: HetznerSimulator
) -> None:
    world = hetzner_world(world_engine, sim)
    behind = await world.provider.acquire("egress-made-by-hand")
    report = await AuditEgress(world.ports).run()
    assert behind.address in [leak.address for leak in report.leaks]


async def test_an_address_the_egress_host_cannot_take_is_given_back_not_left_billed(
    world_engine: AsyncEngine, sim: HetznerSimulator
) -> None:
    world = hetzner_world(world_engine, sim)
    first, second = await world.users(2)
    assert (await world.ledger.allocate(first, SYSTEM, "paying")).address is not None

    async def room_seen_before_the_host_took_its_ipv4() -> None:
        return None  # the look at the host raced the first address's assign

    world.provider._check_room = room_seen_before_the_host_took_its_ipv4  # type: ignore[attr-defined,method-assign]
    # Hetzner assigns one Primary IPv4 per server: the second cannot be attached.
    assert (await world.ledger.allocate(second, SYSTEM, "paying")).address is None
    assert len(sim.primary_ips) == 1  # the second was deleted again, not left billed
    report = await AuditEgress(world.ports).run()
    assert report.leaks == [] and [w.user_id for w in report.waiting] == [second]


async def test_concurrent_allocations_of_one_user_never_delete_the_address_one_of_them_records(
    world_engine: AsyncEngine, sim: HetznerSimulator
) -> None:
    # The job in two workers and an admin's plan change share the user's attempt, so its label:
    # all adopt one Primary IP and race to assign it. The losers' refusals are no reason to
    # give it back.
    world = hetzner_world(world_engine, sim)
    for _ in range(5):
        (user,) = await world.users(1)
        for ip in sim.primary_ips:  # the egress host's one IPv4 slot, freed for this round
            ip["assignee_id"] = None
        sim.lose_create_answers = 1  # every caller then finds the address by its label
        await asyncio.gather(*(world.ledger.allocate(user, SYSTEM, "paying") for _ in range(4)))
        live = await world.live(user)
        if live is not None:
            assert live in [ip["ip"] for ip in sim.primary_ips], "the ledger binds a deleted address"


async def test_a_full_egress_host_costs_no_create_and_is_not_asked_again_on_every_run(
    world_engine: AsyncEngine, sim: HetznerSimulator
) -> None:
    world = hetzner_world(world_engine, sim)
    first, second = await world.users(2)
    assert (await world.ledger.allocate(first, SYSTEM, "paying")).address is not None

    def creates() -> int:
        return len([r for r in sim.calls("POST", "/v1/primary_ips") if r.path == "/v1/primary_ips"])

    made, asked = creates(), len(sim.requests)
    for _ in range(5):  # the job in a long-lived worker, every minute
        await world.job()
    assert await world.live(second) is None
    # The host holds its one IPv4: nothing created; asked once, then left alone for a while.
    assert creates() == made and len(sim.primary_ips) == 1
    assert len(sim.requests) - asked <= 3
    for _ in range(3):  # `bulwark jobs run` from a timer: a new process, no memory of the last
        timer_run = hetzner_world(world_engine, sim)
        timer_run.clock.current = world.clock.current
        await timer_run.job()
    assert creates() == made and len(sim.primary_ips) == 1
