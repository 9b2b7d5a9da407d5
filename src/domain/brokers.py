"""Broker links (cTrader OAuth) and MT5 bridges; their secrets live only inside secret-box envelopes."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID


class BrokerKind(StrEnum):
    CTRADER = "ctrader"
    MT5 = "mt5"


@dataclass
class BrokerLink:
    id: UUID
    org_id: UUID
    user_id: UUID
    kind: BrokerKind
    account_label: str
    created_at: datetime
    encrypted_credentials: bytes  # a secret-box envelope, never plaintext


@dataclass
class Bridge:
    id: UUID
    org_id: UUID
    broker_link_id: UUID
    name: str
    api_key_hash: str
    created_at: datetime
    revoked_at: datetime | None = None
