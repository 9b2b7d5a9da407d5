"""Deals, positions and commands of bridges in SQL (org-scoped, row-level security)."""

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Insert, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.storage.row_security import RowSecurity
from adapters.storage.tables import bridge_commands, bridge_deals, bridge_positions
from domain.bridges import BridgeCommand, Deal, Position

_C = bridge_commands.c


def _command(row: Any) -> BridgeCommand:
    return BridgeCommand(
        id=row.id,
        org_id=row.org_id,
        bridge_id=row.bridge_id,
        kind=row.kind,
        payload=dict(row.payload),
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        seq=int(row.seq),
        delivered_at=row.delivered_at,
        acked_at=row.acked_at,
    )


class SqlBridgeReportRepository:
    def __init__(self, connection: AsyncConnection, rls: RowSecurity) -> None:
        self.connection = connection
        self.rls = rls

    def _insert(self, table: Any) -> Any:
        dialect = postgresql if self.connection.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    async def add_deals(self, org_id: UUID, bridge_id: UUID, deals: list[Deal], now: datetime) -> int:
        if not deals:
            return 0
        await self.rls.org(org_id)
        rows = [
            {
                "bridge_id": bridge_id,
                "ticket": d.ticket,
                "org_id": org_id,
                "order_ticket": d.order,
                "time": d.time,
                "symbol": d.symbol,
                "type": d.type,
                "entry": d.entry,
                "volume": d.volume,
                "price": d.price,
                "profit": d.profit,
                "commission": d.commission,
                "swap": d.swap,
                "magic": d.magic,
                "comment": d.comment,
                "received_at": now,
            }
            for d in deals
        ]
        statement = (
            self._insert(bridge_deals)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["bridge_id", "ticket"])
            .returning(bridge_deals.c.ticket)
        )
        return len((await self.connection.execute(statement)).all())

    async def put_positions(
        self, org_id: UUID, bridge_id: UUID, positions: list[Position], now: datetime
    ) -> None:
        if not positions:
            return
        await self.rls.org(org_id)
        rows = [
            {
                "bridge_id": bridge_id,
                "ticket": p.ticket,
                "org_id": org_id,
                "time": p.time,
                "symbol": p.symbol,
                "type": p.type,
                "volume": p.volume,
                "price_open": p.price_open,
                "sl": p.sl,
                "tp": p.tp,
                "price_current": p.price_current,
                "profit": p.profit,
                "swap": p.swap,
                "magic": p.magic,
                "received_at": now,
            }
            for p in positions
        ]
        statement = self._insert(bridge_positions).values(rows)
        changing = (
            "time",
            "symbol",
            "type",
            "volume",
            "price_open",
            "sl",
            "tp",
            "price_current",
            "profit",
            "swap",
            "magic",
            "received_at",
        )
        statement = statement.on_conflict_do_update(
            index_elements=["bridge_id", "ticket"], set_={name: statement.excluded[name] for name in changing}
        )
        await self.connection.execute(statement)

    async def queue_command(self, command: BridgeCommand) -> BridgeCommand:
        await self.rls.org(command.org_id)
        statement: Insert = insert(bridge_commands).values(
            id=command.id,
            org_id=command.org_id,
            bridge_id=command.bridge_id,
            kind=command.kind,
            payload=command.payload,
            created_by=command.created_by,
            created_at=command.created_at,
            expires_at=command.expires_at,
        )
        row = (await self.connection.execute(statement.returning(*bridge_commands.c))).one()
        return _command(row)

    async def take_commands(
        self, org_id: UUID, bridge_id: UUID, after: int, now: datetime, limit: int
    ) -> list[BridgeCommand]:
        await self.rls.org(org_id)
        pending = (
            select(_C.seq)
            .where(
                (_C.org_id == org_id)
                & (_C.bridge_id == bridge_id)
                & (_C.seq > after)
                & _C.delivered_at.is_(None)
                & (_C.expires_at > now)
            )
            .order_by(_C.seq)
            .limit(limit)
        )
        # The claim re-checks delivered_at: of two concurrent polls, only one marks a command.
        rows = await self.connection.execute(
            update(bridge_commands)
            .where(_C.seq.in_(pending) & _C.delivered_at.is_(None))
            .values(delivered_at=now)
            .returning(*bridge_commands.c)
        )
        return sorted((_command(row) for row in rows), key=lambda c: c.seq)

    async def ack_command(self, org_id: UUID, bridge_id: UUID, command_id: UUID, now: datetime) -> bool:
        await self.rls.org(org_id)
        result = await self.connection.execute(
            update(bridge_commands)
            .where(
                (_C.org_id == org_id)
                & (_C.bridge_id == bridge_id)
                & (_C.id == command_id)
                & _C.delivered_at.is_not(None)
                & _C.acked_at.is_(None)
            )
            .values(acked_at=now)
        )
        return bool(result.rowcount == 1)
