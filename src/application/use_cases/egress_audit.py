"""The orphan audit: the ledger, the provider's list and the gateway's view side by side.

- leaks: addresses the provider bills us for that the ledger does not hold (money);
- missing: ledger addresses (not released) the provider no longer lists;
- stale: allocations of closed, suspended, paused-too-long or no-longer-paying users;
- broken: allocations whose address the gateway cannot send from (not in its pool, not held
  by the egress host): every tunnel of the holder fails;
- dangerous: gateway bindings the ledger does not know (traffic leaving from a wrong address);
- stuck: teardowns that have not moved for longer than the threshold;
- waiting: paying users the pool had no address for."""

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from application.admin_actions import require_admin_principal
from application.egress_ledger import EgressPorts
from application.ports.egress_gateway import EgressGatewayUnavailable, GatewayBinding
from application.ports.egress_provider import EgressProviderUnavailable, ProviderAddress
from application.ports.egress_repository import EgressPending
from domain import egress
from domain.egress import EgressAddress, EgressState
from domain.users import User, UserStatus


@dataclass(frozen=True)
class StaleAllocation:
    address: EgressAddress
    why: str  # closed | suspended | paused | not_paying


@dataclass
class EgressAuditReport:
    checked_at: datetime
    ledger_size: int
    leaks: list[ProviderAddress] = field(default_factory=list)
    missing: list[EgressAddress] = field(default_factory=list)
    stale: list[StaleAllocation] = field(default_factory=list)
    broken: list[EgressAddress] = field(default_factory=list)
    dangerous: list[GatewayBinding] = field(default_factory=list)
    stuck: list[EgressAddress] = field(default_factory=list)
    waiting: list[EgressPending] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # what could not be asked, and why

    @property
    def clean(self) -> bool:
        findings = (
            self.leaks,
            self.missing,
            self.stale,
            self.broken,
            self.dangerous,
            self.stuck,
            self.waiting,
        )
        return not any(findings) and not self.unchecked


@dataclass
class AuditEgress:
    ports: EgressPorts

    async def __call__(self, admin: object) -> EgressAuditReport:
        require_admin_principal(admin)
        return await self.run()

    async def run(self) -> EgressAuditReport:
        """Without an admin session: the `bulwark egress audit` command on the server."""
        ports = self.ports
        now = ports.clock.now()
        async with ports.uow() as uow:
            ledger = await uow.egress.every()
            waiting = await uow.egress.waiting()
            holders: dict[UUID, User | None] = {}
            for held in ledger:
                if held.state is EgressState.ALLOCATED and held.user_id is not None:
                    holders[held.user_id] = await uow.users.get(held.user_id)
        report = EgressAuditReport(checked_at=now, ledger_size=len(ledger), waiting=waiting)
        await self._against_provider(ledger, report)
        await self._against_gateway(ledger, report)
        for held in ledger:
            if egress.stuck(held, now, ports.policy.stuck_after):
                report.stuck.append(held)
            if held.state is EgressState.ALLOCATED and held.user_id is not None:
                why = self._stale(holders.get(held.user_id), now)
                if why:
                    report.stale.append(StaleAllocation(held, why))
        return report

    def _stale(self, user: User | None, now: datetime) -> str:
        if user is None or user.status is UserStatus.CLOSED:
            return "closed"
        if user.status is UserStatus.SUSPENDED:
            return "suspended"
        paused_since = user.updated_at or user.created_at
        if user.status is UserStatus.PAUSED and now - paused_since > self.ports.policy.paused_stale_after:
            return "paused"
        if not self.ports.plans.is_paying(user.plan):
            return "not_paying"
        return ""

    async def _against_provider(self, ledger: list[EgressAddress], report: EgressAuditReport) -> None:
        try:
            owned = await self.ports.provider.owned()
        except EgressProviderUnavailable as error:
            report.unchecked.append(f"provider {self.ports.provider.name}: {error}")
            return
        held = {a.address for a in ledger if a.state is not EgressState.RELEASED}
        listed = {p.address for p in owned}
        report.leaks = [p for p in owned if p.address not in held]
        report.missing = [
            a for a in ledger if a.state is not EgressState.RELEASED and a.address not in listed
        ]

    async def _against_gateway(self, ledger: list[EgressAddress], report: EgressAuditReport) -> None:
        gateway = self.ports.gateway
        if gateway is None:
            report.unchecked.append("gateway: none configured (bindings cannot be compared)")
            return
        try:
            bindings = list(await gateway.bindings())
        except EgressGatewayUnavailable as error:
            report.unchecked.append(f"gateway: {error}")
            return
        live: set[tuple[UUID, str]] = {
            (a.user_id, a.address)
            for a in ledger
            if a.state is EgressState.ALLOCATED and a.user_id is not None
        }
        allocated = [a for a in ledger if a.state is EgressState.ALLOCATED]
        try:
            unbindable = set(await gateway.unbindable([a.address for a in allocated]))
        except EgressGatewayUnavailable as error:
            report.unchecked.append(f"gateway: {error}")
            unbindable = set()
        # Squid binds a user only while their workers connect, so an idle holder is not broken;
        # an address the gateway cannot send from fails every tunnel its holder opens.
        report.broken = [a for a in allocated if a.address in unbindable]
        report.dangerous = [b for b in bindings if (b.user_id, b.address) not in live]
