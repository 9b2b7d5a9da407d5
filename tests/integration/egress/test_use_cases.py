"""The ledger's use cases and job on real storage (both backends) with in-memory provider and
gateway: allocation on a paying plan, the downgrade grace, the two-phase teardown, the pool
running out, and the orphan audit."""

import contextlib
from datetime import timedelta

from application.egress_ledger import EgressLedger
from application.use_cases.egress_audit import AuditEgress
from domain.egress import SYSTEM, EgressActor, EgressState
from domain.users import UserStatus
from tests.egress_doubles import FixedPool, GrowingProvider
from tests.integration.egress.seed import pool
from tests.integration.egress.world import EgressWorld

DAY = timedelta(days=1)
ADMIN = EgressActor("admin")


async def test_becoming_paying_allocates_one_address_and_asking_again_keeps_it(world: EgressWorld) -> None:
    (user,) = await world.users(1)
    first = await world.ledger.follow_plan(user, ADMIN)
    assert first is not None and first.new and first.address is not None
    again = await world.ledger.allocate(user, SYSTEM, "again")
    assert not again.new and again.address is not None and again.address.address == first.address.address
    rows = await world.ledger_rows()
    assert sum(1 for state, holder in rows.values() if state is EgressState.ALLOCATED) == 1
    assert rows[first.address.address] == (EgressState.ALLOCATED, user)


async def test_a_free_or_closed_account_gets_no_address(world: EgressWorld) -> None:
    free, closed = await world.users(1, "free") + await world.users(1)
    await world.close(closed)
    assert (await world.ledger.allocate(free, SYSTEM, "t")).refused
    assert (await world.ledger.allocate(closed, SYSTEM, "t")).refused
    assert await world.live(free) is None and await world.live(closed) is None


async def test_a_downgrade_keeps_the_address_for_the_grace_and_a_re_upgrade_inside_keeps_it(
    world: EgressWorld,
) -> None:
    (user,) = await world.users(1)
    allocation = await world.ledger.follow_plan(user, ADMIN)
    assert allocation is not None and allocation.address is not None
    address = allocation.address.address
    await world.set_user(user, plan="free")
    await world.ledger.follow_plan(user, ADMIN)
    world.clock.current += 6 * DAY
    await world.job()
    assert await world.live(user) == address  # still inside the grace
    await world.set_user(user, plan="pro")
    await world.ledger.follow_plan(user, ADMIN)
    world.clock.current += 30 * DAY
    await world.job()
    assert await world.live(user) == address  # the re-upgrade ended the grace


async def test_the_grace_over_the_teardown_runs_in_two_phases_and_the_address_rests(
    world: EgressWorld,
) -> None:
    (user,) = await world.users(1)
    allocation = await world.ledger.follow_plan(user, ADMIN)
    assert allocation is not None and allocation.address is not None
    address = allocation.address.address
    world.gateway.bound.add((user, address))
    await world.set_user(user, plan="free")
    await world.ledger.follow_plan(user, ADMIN)
    world.clock.current += 7 * DAY
    world.gateway.confirm = False
    report = await world.job()
    # Phase 1 asked, not confirmed: the address stays draining (and is nobody's live binding).
    assert report.teardowns_started == 1 and report.detached == 0
    assert (await world.ledger_rows())[address] == (EgressState.DRAINING, user)
    assert await world.live(user) is None
    world.gateway.confirm = True
    await world.job()
    assert (await world.ledger_rows())[address] == (EgressState.COOLING, user)
    world.clock.current += 7 * DAY - timedelta(seconds=1)
    await world.job()
    assert (await world.ledger_rows())[address][0] is EgressState.COOLING  # not a second early
    world.clock.current += timedelta(seconds=1)
    await world.job()
    assert (await world.ledger_rows())[address] == (EgressState.AVAILABLE, None)


async def test_without_a_gateway_a_teardown_waits_in_draining_and_says_why(world_engine: object) -> None:
    world = EgressWorld.wire(world_engine, FixedPool(pool(2)))  # type: ignore[arg-type]
    world.ports.gateway = None
    (user,) = await world.users(1)
    allocation = await world.ledger.follow_plan(user, ADMIN)
    assert allocation is not None and allocation.address is not None
    await world.close(user)
    report = await world.job()
    assert report.teardowns_started == 1 and report.detached == 0
    assert any("no egress gateway" in why for why in report.held_back)
    assert (await world.ledger_rows())[allocation.address.address] == (EgressState.DRAINING, user)


async def test_an_unreachable_gateway_leaves_the_teardown_where_it_is(world: EgressWorld) -> None:
    (user,) = await world.users(1)
    allocation = await world.ledger.follow_plan(user, ADMIN)
    assert allocation is not None and allocation.address is not None
    await world.close(user)
    world.gateway.down = True
    await world.job()
    assert (await world.ledger_rows())[allocation.address.address] == (EgressState.DRAINING, user)


async def test_pool_exhausted_the_user_waits_admins_are_told_once_and_the_job_retries(
    world: EgressWorld,
) -> None:
    admin_email = await world.admin()
    users = await world.users(4)
    outcomes = [await world.ledger.allocate(u, SYSTEM, "t") for u in users]
    assert [o.address is not None for o in outcomes] == [True, True, True, False]
    assert not outcomes[3].refused
    assert [m.to for m in world.mailer.outbox] == [admin_email]
    assert str(users[3]) in world.mailer.outbox[0].body
    await world.job()
    assert len(world.mailer.outbox) == 1  # told once
    assert await world.live(users[3]) is None
    # One holder leaves; after the teardown and the cooldown the job gives the address on.
    await world.close(users[0])
    await world.job()
    world.clock.current += 8 * DAY
    report = await world.job()
    assert report.returned_to_pool == 1 and report.allocated == 1
    assert await world.live(users[3]) == outcomes[0].address.address  # type: ignore[union-attr]
    async with world.ports.uow() as uow:
        assert await uow.egress.waiting() == []


async def test_a_widened_pool_is_picked_up_at_allocation(world_engine: object) -> None:
    provider = FixedPool(pool(1))
    world = EgressWorld.wire(world_engine, provider)  # type: ignore[arg-type]
    users = await world.users(2)
    assert (await world.ledger.allocate(users[0], SYSTEM, "t")).address is not None
    assert (await world.ledger.allocate(users[1], SYSTEM, "t")).address is None
    provider.addresses = pool(2)
    assert (await world.ledger.allocate(users[1], SYSTEM, "t")).address is not None


async def test_a_growing_provider_creates_adopts_by_label_and_releases_once_confirmed(
    world_engine: object,
) -> None:
    provider = GrowingProvider(quota=5)
    world = EgressWorld.wire(world_engine, provider)  # type: ignore[arg-type]
    (user,) = await world.users(1)
    crashed = {"once": True}

    async def crash_after_acquire(step: str) -> None:
        if step == "acquired" and crashed.pop("once", False):
            raise RuntimeError("crash between the provider's create and the ledger's record")

    world.ports.after_step = crash_after_acquire
    with contextlib.suppress(RuntimeError):
        await world.ledger.allocate(user, SYSTEM, "t")
    assert await world.live(user) is None and len(await provider.owned()) == 1
    allocation = await world.ledger.allocate(user, SYSTEM, "retry")
    assert allocation.address is not None
    assert len(await provider.owned()) == 1  # adopted by the attempt's label, not a second one
    await world.close(user)
    # Given back right after the gateway's detach (no cooldown paid for); a delete the provider
    # does not confirm leaves the address draining, and the next run retries it.
    provider.confirm_release = False
    report = await world.job()
    assert report.released == 0 and report.held_back
    assert (await world.ledger_rows())[allocation.address.address] == (EgressState.DRAINING, user)
    provider.confirm_release = True
    report = await world.job()
    assert report.released == 1
    assert (await world.ledger_rows())[allocation.address.address] == (EgressState.RELEASED, None)
    assert await provider.owned() == []


async def test_the_audit_finds_leaks_stale_broken_dangerous_stuck_and_waiting(world_engine: object) -> None:
    provider = FixedPool(pool(3))
    world = EgressWorld.wire(world_engine, provider)  # type: ignore[arg-type]
    paying, downgraded, closing, waiting_user = await world.users(4)
    a = (await world.ledger.allocate(paying, SYSTEM, "t")).address
    b = (await world.ledger.allocate(downgraded, SYSTEM, "t")).address
    c = (await world.ledger.allocate(closing, SYSTEM, "t")).address
    assert a and b and c
    assert (await world.ledger.allocate(waiting_user, SYSTEM, "t")).address is None
    await world.set_user(downgraded, plan="free")
    # The paying holder is idle (no tunnel now: not a finding); the downgraded one's address is
    # not on the egress host any more.
    world.gateway.bound = {(waiting_user, "127.0.0.99")}
    world.gateway.cannot_send_from = {b.address}
    async with world.ports.uow() as uow:
        from application.egress_ledger import start_teardown_of

        await start_teardown_of(uow, closing, world.clock.now(), SYSTEM, "closed")
        await uow.commit()
    world.gateway.confirm = False
    provider.addresses = [*pool(3), *pool(1, first=50)]  # one bought behind the ledger's back
    world.clock.current += timedelta(hours=7)
    report = await AuditEgress(world.ports).run()
    assert [p.address for p in report.leaks] == ["127.0.0.50"]
    assert [(s.address.address, s.why) for s in report.stale] == [(b.address, "not_paying")]
    assert [x.address for x in report.broken] == [b.address]
    assert [(d.user_id, d.address) for d in report.dangerous] == [(waiting_user, "127.0.0.99")]
    assert [x.address for x in report.stuck] == [c.address]
    assert [w.user_id for w in report.waiting] == [waiting_user]
    assert not report.clean


async def test_a_clean_ledger_audits_clean(world: EgressWorld) -> None:
    (user,) = await world.users(1)
    allocation = await world.ledger.allocate(user, SYSTEM, "t")
    assert allocation.address is not None
    await world.ledger.seed(await world.provider.owned())
    world.gateway.bound = {(user, allocation.address.address)}
    report = await AuditEgress(world.ports).run()
    assert report.clean, report


async def test_a_suspended_holder_loses_the_address_at_the_next_job(world: EgressWorld) -> None:
    (user,) = await world.users(1)
    assert (await world.ledger.allocate(user, SYSTEM, "t")).address is not None
    await world.set_user(user, status=str(UserStatus.SUSPENDED))
    report = await world.job()
    assert report.teardowns_started == 1 and await world.live(user) is None


def test_the_ledger_is_one_class_shared_by_every_entry() -> None:
    assert EgressLedger.allocate and EgressLedger.follow_plan


async def test_a_re_upgrade_committed_while_the_job_works_through_its_list_keeps_the_address(
    world: EgressWorld,
) -> None:
    first, second = await world.users(2)
    await world.ledger.follow_plan(first, ADMIN)
    kept = await world.ledger.follow_plan(second, ADMIN)
    assert kept.address is not None
    await world.set_user(second, plan="free")
    await world.ledger.follow_plan(second, ADMIN)  # the grace starts
    world.clock.current += 8 * DAY  # and is over when the job reads its list

    async def pays_again_meanwhile(step: str) -> None:
        if step == "holder followed" and await world.live(second) is not None:
            await world.set_user(second, plan="pro")
            await world.ledger.follow_plan(second, ADMIN)  # ends the grace

    world.ports.after_step = pays_again_meanwhile
    await world.job()
    assert (await world.ledger_rows())[kept.address.address] == (EgressState.ALLOCATED, second)


async def test_paying_again_after_the_grace_ran_out_but_before_the_job_keeps_the_address(
    world: EgressWorld,
) -> None:
    (user,) = await world.users(1)
    kept = await world.ledger.follow_plan(user, ADMIN)
    assert kept.address is not None
    await world.set_user(user, plan="free")
    await world.ledger.follow_plan(user, ADMIN)
    world.clock.current += 8 * DAY
    await world.set_user(user, plan="pro")  # the plan change's own follow-up was lost
    report = await world.job()
    assert report.teardowns_started == 0
    assert (await world.ledger_rows())[kept.address.address] == (EgressState.ALLOCATED, user)
    async with world.ports.uow() as uow:
        assert (await uow.egress.get(kept.address.address)).grace_until is None  # type: ignore[union-attr]


async def test_an_address_taken_out_of_the_fixed_pool_is_never_handed_out_again(world_engine: object) -> None:
    provider = FixedPool(pool(2))
    world = EgressWorld.wire(world_engine, provider)  # type: ignore[arg-type]
    await world.ledger.seed(await provider.owned())
    provider.addresses = pool(1)  # the operator shrank BULWARK_EGRESS_POOL; squid.conf followed
    first, second = await world.users(2)
    kept = (await world.ledger.allocate(first, SYSTEM, "t")).address
    assert kept is not None and kept.address == pool(1)[0].address
    assert (await world.ledger.allocate(second, SYSTEM, "t")).address is None  # waits instead
    report = await AuditEgress(world.ports).run()
    assert [a.address for a in report.missing] == [pool(2)[1].address]
