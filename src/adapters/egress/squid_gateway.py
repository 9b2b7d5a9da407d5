"""The egress gateway as the ledger sees it (EgressGateway), over Squid.

bindings(): the open tunnels and the logins Squid would admit from its cache right now, from
Squid's cache manager (each login names user and address).
unbindable(addresses): the ones outside the pool `render-squid` renders (Squid refuses a note
naming them) or not held by the egress host (its local routing table).
detach(user, address, unbound_at): the ledger has already unbound the address, so the helper
refuses the user's next login at once; this cuts the tunnels still leaving from the address
(`ss -K`) and confirms only when (1) Squid lists none of that user on that address, (2) no TCP
connection leaves from the address, and (3) Squid's cached answers (`credentialsttl`, plus a
margin for an answer read just before the unbinding and delivered after) have expired since the
ledger unbound it, so not even a cached login can open a new tunnel afterwards. The instant
comes from the ledger, so a `bulwark jobs run` from a timer (a new process each time) confirms
as soon as a run in one long-lived process would."""

import asyncio
import logging
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID

from adapters.egress.host_addresses import HostAddressesUnreadable
from adapters.egress.squid_manager import SquidManager
from adapters.egress.tunnel_cutter import TunnelCutFailed
from application.ports.clock import Clock
from application.ports.egress_gateway import EgressGatewayUnavailable, GatewayBinding

log = logging.getLogger("bulwark.egress.gateway")

# A helper answer read from the ledger just before it unbound the address may reach Squid (and
# be cached) a moment after: the batch's read and its delivery.
ANSWER_IN_FLIGHT = timedelta(seconds=2)


class TunnelCutter(Protocol):
    async def cut(self, address: str) -> None: ...

    async def open_from(self, address: str) -> int: ...


class HostAddresses(Protocol):
    async def not_local(self, addresses: Sequence[str]) -> list[str]: ...


class SquidEgressGateway:
    def __init__(
        self,
        manager: SquidManager,
        cutter: TunnelCutter | None,
        clock: Clock,
        cached_answer_life: timedelta,
        settle: float = 0.2,
        pool: Collection[str] | None = (),
        host: HostAddresses | None = None,
    ) -> None:
        self.manager = manager
        self.cutter = cutter
        self.clock = clock
        self.cached_answer_life = cached_answer_life
        self.settle = settle  # Squid closes the client side just after the server side is cut
        # The addresses squid.conf has a tcp_outgoing_address for; None: rendered from the ledger.
        self.pool = None if pool is None else frozenset(pool)
        self.host = host

    async def bindings(self) -> Sequence[GatewayBinding]:
        seen = {*await self.manager.open_tunnels(), *await self.manager.admitted_logins()}
        return sorted(seen, key=lambda b: (b.address, str(b.user_id)))

    async def unbindable(self, addresses: Sequence[str]) -> Sequence[str]:
        pool = self.pool
        outside = [] if pool is None else [a for a in addresses if a not in pool]
        if self.host is None:
            return outside
        try:
            not_held = await self.host.not_local([a for a in addresses if pool is None or a in pool])
        except (HostAddressesUnreadable, OSError) as error:
            raise EgressGatewayUnavailable(f"the egress host's addresses: {error}") from error
        return sorted({*outside, *not_held})

    async def detach(self, user_id: UUID, address: str, unbound_at: datetime) -> bool:
        sockets = 0
        try:
            if self.cutter is not None:
                await self.cutter.cut(address)
                await asyncio.sleep(self.settle)
            tunnels = [b for b in await self.manager.open_tunnels() if b == GatewayBinding(user_id, address)]
            if self.cutter is not None:
                sockets = await self.cutter.open_from(address)
        except TunnelCutFailed as failed:
            # Unconfirmable: this teardown waits, the job goes on with the others.
            raise EgressGatewayUnavailable(str(failed)) from failed
        waited = self.clock.now() - unbound_at >= self.cached_answer_life + ANSWER_IN_FLIGHT
        confirmed = not tunnels and not sockets and waited
        if not confirmed:
            log.info(
                "detach of %s from %s not confirmed yet: %d tunnels, %d sockets, cache %s",
                user_id,
                address,
                len(tunnels),
                sockets,
                "expired" if waited else "may still admit",
            )
        return confirmed
