"""The egress job (`bulwark jobs run` and the in-process scheduler): follows plans, retries
waiting allocations, and moves teardowns on in two phases.

Phase 1: a `draining` address moves on only once the gateway confirmed the holder's traffic has
stopped. Phase 2: a fixed pool's address cools, then returns to the pool; a growing provider's
(which bills per address) is released there right after phase 1 and marked `released` only once
the provider confirmed, so a delete that fails leaves it `draining` and the next run retries.
Every outside effect is idempotent and its record is conditional on the state it was computed
from, so a crash between any two steps is resumed by the next run without an address both bound
and available, and without losing one."""

import contextlib
import logging
from dataclasses import dataclass, field

from application.egress_ledger import EgressLedger, EgressPorts, start_teardown_of
from application.ports.egress_gateway import EgressGatewayUnavailable
from application.ports.egress_provider import EgressProviderUnavailable, ProviderAddress
from domain import egress
from domain.egress import SYSTEM, EgressAddress, EgressState
from domain.users import UserStatus

log = logging.getLogger("bulwark.egress")

_ALLOCATIONS_PER_RUN = 500


@dataclass
class EgressJobReport:
    allocated: int = 0
    waiting: int = 0
    graces_started: int = 0
    teardowns_started: int = 0
    detached: int = 0
    returned_to_pool: int = 0
    released: int = 0
    held_back: list[str] = field(default_factory=list)  # why some teardown could not move on

    @property
    def moved(self) -> int:
        return self.allocated + self.teardowns_started + self.detached + self.returned_to_pool + self.released


class RunEgressJob:
    def __init__(self, ports: EgressPorts, ledger: EgressLedger) -> None:
        self.ports = ports
        self.ledger = ledger

    async def __call__(self) -> EgressJobReport:
        report = EgressJobReport()
        await self._seed()
        await self._follow_holders(report)
        await self._phase_one(report)
        await self._phase_two(report)  # frees what it can before anybody waiting is served
        await self._allocate_waiting(report)
        await self.ledger.tell_admins()
        return report

    async def _seed(self) -> None:
        if self.ports.provider.grows:
            return  # a growing provider's addresses enter the ledger when acquired
        try:
            await self.ledger.seed(await self.ports.provider.owned())
        except EgressProviderUnavailable:
            log.warning("egress provider unavailable; the pool is not refreshed this run")

    async def _follow_holders(self, report: EgressJobReport) -> None:
        """Every allocated address against its holder as they are now: closed or suspended tears
        down at once, no longer paying starts the grace (if a plan change's own follow-up was
        lost), paying again ends it, a grace that ran out tears down."""
        ports = self.ports
        now = ports.clock.now()
        async with ports.uow() as uow:
            allocated = await uow.egress.in_states((EgressState.ALLOCATED,))
        for listed in allocated:
            async with ports.uow() as uow:
                # Decided on the row as it is now, not as listed: a re-upgrade committed since
                # the list was read has ended the grace, and must not be torn down.
                held = await uow.egress.lock(listed.address)
                if held is None or held.state is not EgressState.ALLOCATED or held.user_id != listed.user_id:
                    continue
                assert held.user_id is not None
                user = await uow.users.get(held.user_id)
                if user is None or user.status in (UserStatus.CLOSED, UserStatus.SUSPENDED):
                    why = "account closed" if user is None else f"account {user.status}"
                    report.teardowns_started += len(
                        await start_teardown_of(uow, held.user_id, now, SYSTEM, why)
                    )
                elif ports.plans.is_paying(user.plan):
                    # Paying again (a plan change whose own follow-up was lost): keeps the address.
                    if egress.end_grace(held) is not None:
                        await uow.egress.set_grace(held, None, now, SYSTEM, "paying again inside the grace")
                elif egress.grace_over(held, now):
                    move = egress.start_teardown(held, now, SYSTEM, "downgrade grace over")
                    report.teardowns_started += bool(move and await uow.egress.apply(move))
                else:
                    graced = egress.start_grace(held, now, ports.policy.downgrade_grace)
                    if graced is not None and await uow.egress.set_grace(
                        held, graced.grace_until, now, SYSTEM, "plan no longer paying"
                    ):
                        report.graces_started += 1
                await uow.commit()
            await ports.after_step("holder followed")

    async def _allocate_waiting(self, report: EgressJobReport) -> None:
        async with self.ports.uow() as uow:
            wanting = await uow.egress.paying_without_address(self.ports.plans.paying, _ALLOCATIONS_PER_RUN)
            waiting = await uow.egress.waiting()
        wanted = set(wanting)
        for entry in waiting:
            if entry.user_id not in wanted:  # no longer paying, closed, or served meanwhile
                async with self.ports.uow() as uow:
                    if await uow.egress.live_for_user(entry.user_id) is None:
                        await uow.egress.stop_waiting(entry.user_id)
                    await uow.commit()
        for user_id in wanting:
            allocation = await self.ledger.allocate(user_id, SYSTEM, "retried by the egress job")
            if allocation.new:
                report.allocated += 1
            elif allocation.address is None and not allocation.refused:
                report.waiting += 1

    async def _phase_one(self, report: EgressJobReport) -> None:
        ports = self.ports
        async with ports.uow() as uow:
            draining = await uow.egress.in_states((EgressState.DRAINING,))
        if draining and ports.gateway is None:
            report.held_back.append(
                f"{len(draining)} draining: no egress gateway is configured to confirm a detach"
            )
            return
        for address in draining:
            assert address.user_id is not None and ports.gateway is not None
            try:
                confirmed = await ports.gateway.detach(address.user_id, address.address, address.since)
            except EgressGatewayUnavailable as error:
                report.held_back.append(f"{address.address}: gateway unavailable ({error})")
                continue
            if not confirmed:
                report.held_back.append(f"{address.address}: the gateway has not confirmed the detach yet")
                continue
            await ports.after_step("detach confirmed")
            if ports.provider.grows:
                await self._release(address, report)
                continue
            async with ports.uow() as uow:
                current = await uow.egress.lock(address.address)
                move = (
                    None
                    if current is None
                    else egress.detached(current, ports.clock.now(), ports.policy.cooldown)
                )
                if move is not None and await uow.egress.apply(move):
                    report.detached += 1
                await uow.commit()
            await ports.after_step("cooling recorded")

    async def _phase_two(self, report: EgressJobReport) -> None:
        ports = self.ports
        now = ports.clock.now()
        async with ports.uow() as uow:
            cooling = [
                a for a in await uow.egress.in_states((EgressState.COOLING,)) if egress.cooldown_over(a, now)
            ]
        for address in cooling:  # a growing provider's only when it was cooling before (a switch)
            if ports.provider.grows:
                await self._release(address, report)
                continue
            async with ports.uow() as uow:
                current = await uow.egress.lock(address.address)
                move = None if current is None else egress.cooled(current, ports.clock.now())
                if move is not None and await uow.egress.apply(move):
                    report.returned_to_pool += 1
                await uow.commit()
            await ports.after_step("returned to pool")

    async def _release(self, address: EgressAddress, report: EgressJobReport) -> None:
        ports = self.ports
        found = ProviderAddress(address.address, address.provider_ref)
        try:
            await ports.provider.detach(found)
            await ports.after_step("provider detached")
            confirmed = await ports.provider.release(found)
        except EgressProviderUnavailable as error:
            report.held_back.append(f"{address.address}: provider unavailable ({error})")
            return
        if not confirmed:
            report.held_back.append(f"{address.address}: the provider has not confirmed the release yet")
            return
        await ports.after_step("release confirmed")
        async with ports.uow() as uow:
            current = await uow.egress.lock(address.address)
            move = None
            if current is not None and current.provider_ref == address.provider_ref:
                # Another run may have released it and the provider handed it out again since.
                with contextlib.suppress(egress.EgressTransitionRefused):
                    move = egress.released(current, ports.clock.now())
            if move is not None and await uow.egress.apply(move):
                report.released += 1
            await uow.commit()
        await ports.after_step("released recorded")
