"""Where dedicated egress addresses come from: the operator's routed block (`static`) or a
cloud's API (`hetzner`). The ledger in PostgreSQL is the truth about who holds an address; the
provider is the truth about which addresses we pay for."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class ProviderAddress:
    address: str  # dotted IPv4
    provider_ref: str  # the provider's own id (a Hetzner Primary IP id; static: the address)
    labels: Mapping[str, str] = field(default_factory=dict)


class EgressProviderExhausted(Exception):
    """The provider cannot give another address (a fixed pool, or a quota reached)."""


class EgressAttachRefused(EgressProviderExhausted):
    """The egress host cannot take this address (Hetzner: it holds its one Primary IPv4, or it
    is running): no retry of the same address will succeed, so it is given back."""


class EgressProviderUnavailable(Exception):
    """The provider did not answer usefully after its retries; try again later."""


class EgressProvider(Protocol):
    name: str  # "static" | "hetzner"
    grows: bool  # True when `acquire` can create addresses; a static pool is fixed

    async def owned(self) -> Sequence[ProviderAddress]:
        """Every address the provider says is ours (seeds the ledger; the orphan audit)."""
        ...

    async def acquire(self, label: str) -> ProviderAddress:
        """A new address for `label`, idempotent by label: called again after a crash between
        "created" and "recorded", it adopts the address made the first time instead of leaking it.
        Raises EgressProviderExhausted or EgressProviderUnavailable."""
        ...

    async def attach(self, address: ProviderAddress) -> None:
        """Routes the address to the egress host (Hetzner: assign). Idempotent. Raises
        EgressAttachRefused when the host cannot take it, EgressProviderUnavailable otherwise."""
        ...

    async def detach(self, address: ProviderAddress) -> None:
        """Takes the address off the egress host (Hetzner: unassign). Idempotent."""
        ...

    async def release(self, address: ProviderAddress) -> bool:
        """Gives the address back. True only once the provider confirms it is gone (already gone
        counts); False when this provider never releases (static: it returns to the pool)."""
        ...
