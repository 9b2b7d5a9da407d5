"""The ledger's answer to the egress gateway's one question: which address does this user hold
right now? Read on every admission, so a detach takes effect at once."""

from typing import Protocol
from uuid import UUID


class EgressBindingLookup(Protocol):
    async def live_address(self, user_id: UUID) -> str | None:
        """The address bound to the user in state `allocated` while their account is active, else
        None (draining, cooling, released, never allocated, or the account paused or closed all
        mean: no broker traffic)."""
        ...
