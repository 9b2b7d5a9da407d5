"""The egress gateway (Squid with Bulwark's helper) as the ledger sees it: what it binds now,
and the confirmation that a detached user's traffic has stopped (teardown phase 1)."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID


@dataclass(frozen=True)
class GatewayBinding:
    user_id: UUID
    address: str  # the outgoing address the gateway uses (or last admitted) for this user


class EgressGatewayUnavailable(Exception):
    """The gateway could not be asked; a teardown waiting on it stays where it is."""


class EgressGateway(Protocol):
    async def bindings(self) -> Sequence[GatewayBinding]:
        """What the gateway binds now: live admissions and open tunnels (the orphan audit)."""
        ...

    async def unbindable(self, addresses: Sequence[str]) -> Sequence[str]:
        """Of these addresses, the ones the gateway cannot send from (not in its configured pool,
        or not held by the egress host): their holders' tunnels fail (the orphan audit's broken)."""
        ...

    async def detach(self, user_id: UUID, address: str, unbound_at: datetime) -> bool:
        """Stops admitting the user on `address` and cuts (or waits out) their open tunnels.
        `unbound_at`: when the ledger unbound it (from then on the helper refuses new logins).
        True once confirmed that no tunnel of theirs leaves from it; False: not yet, ask again."""
        ...
