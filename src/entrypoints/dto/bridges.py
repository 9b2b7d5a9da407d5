"""Bodies of the bridge endpoints (management and the bridge API): small JSON an MQL5 EA can
build and parse; unknown fields are refused."""

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec

from application.use_cases.bridge_api import Heartbeat
from entrypoints.dto.identity import WriteBody

_MONEY = msgspec.Meta(ge=-1e15, le=1e15)
# Aware times only: a naive one says nothing about when it was.
Moment = Annotated[datetime, msgspec.Meta(tz=True)]


class CreateBridgeRequest(WriteBody):
    name: str
    broker_connection: str | None = None


class RenameBridgeRequest(WriteBody):
    name: str


class BridgeAccountView(msgspec.Struct):
    login: int
    server: str
    company: str


class BridgeView(msgspec.Struct):
    id: UUID
    name: str
    broker_connection: str | None
    status: str
    account: BridgeAccountView | None
    terminal_build: int | None
    ea_version: str | None
    last_seen_at: datetime | None
    last_ip: str | None
    key_prefix: str
    created_by: UUID
    created_at: datetime


class BridgeList(msgspec.Struct):
    bridges: list[BridgeView]


class BridgeWithKey(msgspec.Struct):
    bridge: BridgeView
    key: str  # shown once


class HelloRequest(WriteBody):
    login: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    server: str
    company: str
    currency: str
    leverage: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)]
    trade_mode: str
    terminal_build: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
    ea_version: str


Money = Annotated[float, _MONEY]


class HeartbeatRequest(WriteBody):
    sent_at: Moment
    connected: bool
    trade_allowed: bool
    balance: Money
    equity: Money
    margin: Money
    margin_free: Money

    def heartbeat(self) -> Heartbeat:
        return Heartbeat(
            sent_at=self.sent_at,
            connected=self.connected,
            trade_allowed=self.trade_allowed,
            balance=self.balance,
            equity=self.equity,
            margin=self.margin,
            margin_free=self.margin_free,
        )


Ticket = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]

Short = Annotated[str, msgspec.Meta(max_length=40)]
Volume = Annotated[float, msgspec.Meta(ge=0, le=1e9)]


class DealItem(msgspec.Struct, forbid_unknown_fields=True):
    ticket: Ticket
    time: Moment
    symbol: Short
    type: Annotated[str, msgspec.Meta(max_length=20)]
    entry: Annotated[str, msgspec.Meta(max_length=20)]
    volume: Volume
    price: Money
    profit: Money = 0.0
    commission: Money = 0.0
    swap: Money = 0.0
    magic: Ticket = 0
    comment: Annotated[str, msgspec.Meta(max_length=100)] = ""
    order: Ticket | None = None


class PositionItem(msgspec.Struct, forbid_unknown_fields=True):
    ticket: Ticket
    time: Moment
    symbol: Short
    type: Annotated[str, msgspec.Meta(max_length=20)]
    volume: Volume
    price_open: Money
    price_current: Money
    sl: Money = 0.0
    tp: Money = 0.0
    profit: Money = 0.0
    swap: Money = 0.0
    magic: Ticket = 0


class DealsRequest(WriteBody):
    deals: list[DealItem]


class PositionsRequest(WriteBody):
    positions: list[PositionItem]


class BatchAnswer(msgspec.Struct):
    accepted: int


class CommandView(msgspec.Struct):
    id: UUID
    seq: int
    kind: str
    payload: dict[str, object]
    expires_at: datetime


class CommandList(msgspec.Struct):
    commands: list[CommandView]
    cursor: int


class QueueCommandRequest(WriteBody):
    kind: Annotated[str, msgspec.Meta(max_length=40)]
    payload: Annotated[
        dict[Annotated[str, msgspec.Meta(max_length=40)], Annotated[str, msgspec.Meta(max_length=200)]],
        msgspec.Meta(max_length=10),
    ] = msgspec.field(default_factory=dict)


class BridgeAnswer(msgspec.Struct):
    bridge_id: UUID
    status: str


class BridgeAuthzAccount(msgspec.Struct):
    login: int
    server: str


class BridgeAuthzAnswer(msgspec.Struct):
    bridge_id: UUID
    org_id: UUID
    account: BridgeAuthzAccount | None
    status: str
