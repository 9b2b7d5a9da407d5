"""What bridges report (deals, positions) and what they are told (commands): org-scoped rows."""

from datetime import datetime
from typing import Protocol
from uuid import UUID

from domain.bridges import BridgeCommand, Deal, Position


class BridgeReportRepository(Protocol):
    async def add_deals(self, org_id: UUID, bridge_id: UUID, deals: list[Deal], now: datetime) -> int:
        """Stores the deals not yet known by (bridge, ticket); answers how many were new."""
        ...

    async def put_positions(
        self, org_id: UUID, bridge_id: UUID, positions: list[Position], now: datetime
    ) -> None:
        """Each position by (bridge, ticket), as last reported."""
        ...

    async def queue_command(self, command: BridgeCommand) -> BridgeCommand:
        """Stored with its cursor position (`seq`)."""
        ...

    async def take_commands(
        self, org_id: UUID, bridge_id: UUID, after: int, now: datetime, limit: int
    ) -> list[BridgeCommand]:
        """Undelivered, unexpired commands past the cursor, marked delivered in the same
        statement: of concurrent polls exactly one gets each command."""
        ...

    async def ack_command(self, org_id: UUID, bridge_id: UUID, command_id: UUID, now: datetime) -> bool: ...
