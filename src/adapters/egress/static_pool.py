"""The `static` egress provider: the operator's routed block(s) from BULWARK_EGRESS_POOL.

The pool is fixed: its addresses are seeded into the ledger from `owned()`, and the ledger cycles
them (available -> allocated -> draining -> cooling -> available). Nothing here talks to a peer:
routing the block to the egress host is the operator's job, done once outside Bulwark."""

from collections.abc import Sequence

from application.ports.egress_provider import EgressProviderExhausted, ProviderAddress
from domain.egress_pool import EgressPool


class StaticPoolProvider:
    name = "static"
    grows = False

    def __init__(self, pool: EgressPool) -> None:
        self._addresses = tuple(ProviderAddress(address=a, provider_ref=a) for a in pool.addresses)

    async def owned(self) -> Sequence[ProviderAddress]:
        return self._addresses

    async def acquire(self, label: str) -> ProviderAddress:
        # Every address already sits in the ledger (seeded from owned()); a fixed pool makes none.
        raise EgressProviderExhausted(
            f"the static pool ({len(self._addresses)} addresses) creates no addresses; "
            "widen BULWARK_EGRESS_POOL to add some"
        )

    async def attach(self, address: ProviderAddress) -> None:
        return None  # the block is routed to the egress host once, by the operator

    async def detach(self, address: ProviderAddress) -> None:
        return None

    async def release(self, address: ProviderAddress) -> bool:
        return False  # never given back: after its cooldown it returns to the pool
