"""MT5 bridges: an Expert Advisor in a user's own MetaTrader 5 terminal, calling us with a key of
its own. The key is `bwk_{bridge id, base32}_{secret, base32}`: the id part finds the bridge in
one lookup, the 256-bit secret proves the caller holds the key."""

import base64
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

KEY_PREFIX = "bwk_"
NAME_MAX = 100
SECRET_BYTES = 32
_B32 = re.compile(r"[a-z2-7]+")


class BridgeStatus(StrEnum):
    PENDING = "pending"  # no hello yet
    ONLINE = "online"
    OFFLINE = "offline"
    SUSPENDED = "suspended"  # two terminals were seen using one key
    REVOKED = "revoked"


@dataclass(frozen=True)
class BoundAccount:
    """The MT5 account a key was bound to by its first hello."""

    login: int
    server: str
    company: str


@dataclass(frozen=True)
class Bridge:
    id: UUID
    org_id: UUID
    name: str
    created_by: UUID
    created_at: datetime
    key_hash: str = field(repr=False)
    key_prefix: str  # shown in lists: enough to tell keys apart, useless to an attacker
    status: BridgeStatus = BridgeStatus.PENDING
    broker_connection: str | None = None
    previous_key_hash: str | None = field(default=None, repr=False)
    previous_valid_until: datetime | None = None
    account: BoundAccount | None = None
    terminal_build: int | None = None
    ea_version: str | None = None
    last_seen_at: datetime | None = None
    last_ip: str | None = None
    version: int = 0  # bumped on every change that affects who may use the key

    def accepted_hashes(self, now: datetime) -> tuple[str, ...]:
        """The current key, and the previous one inside its rotation overlap."""
        if self.previous_key_hash and self.previous_valid_until and now < self.previous_valid_until:
            return (self.key_hash, self.previous_key_hash)
        return (self.key_hash,)

    def shown_status(self, now: datetime, offline_after: timedelta) -> BridgeStatus:
        """Online until three heartbeat intervals (by default) pass without one."""
        if self.status is BridgeStatus.ONLINE and (
            self.last_seen_at is None or now - self.last_seen_at > offline_after
        ):
            return BridgeStatus.OFFLINE
        return self.status

    @property
    def usable(self) -> bool:
        return self.status not in (BridgeStatus.REVOKED, BridgeStatus.SUSPENDED)


def id_part(bridge_id: UUID) -> str:
    return base64.b32encode(bridge_id.bytes).decode("ascii").rstrip("=").lower()


def make_key(bridge_id: UUID, secret: bytes) -> str:
    encoded = base64.b32encode(secret).decode("ascii").rstrip("=").lower()
    return f"{KEY_PREFIX}{id_part(bridge_id)}_{encoded}"


def key_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + 26 + 5]


# RFC 4648 base32 (a-z, 2-7) onto the digits of int(..., 32) (0-9, a-v): the id part is read in
# C, not by base64.b32decode's Python loop, on every bridge request.
_TO_INT32 = str.maketrans("abcdefghijklmnopqrstuvwxyz234567", "0123456789abcdefghijklmnopqrstuv")


def parse_key(key: str) -> UUID | None:
    """The bridge id a well-formed key names, or None; says nothing about whether it is valid."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    parts = key[len(KEY_PREFIX) :].split("_")
    if len(parts) != 2 or len(parts[0]) != 26 or not _B32.fullmatch(parts[0]) or not _B32.fullmatch(parts[1]):
        return None
    bits = int(parts[0].translate(_TO_INT32), 32)  # 130 bits: the 128 of the id, then 2 zero bits
    if bits & 0b11:
        return None  # not how `id_part` writes an id: no second spelling of one bridge
    return UUID(int=bits >> 2)


BATCH_MAX = 500
COMMAND_KINDS = frozenset({"close_all", "pause_trading", "resume_trading"})


@dataclass(frozen=True)
class Deal:
    ticket: int
    time: datetime
    symbol: str
    type: str
    entry: str
    volume: float
    price: float
    profit: float = 0.0
    commission: float = 0.0
    swap: float = 0.0
    magic: int = 0
    comment: str = ""
    order: int | None = None


@dataclass(frozen=True)
class Position:
    ticket: int
    time: datetime
    symbol: str
    type: str
    volume: float
    price_open: float
    price_current: float
    sl: float = 0.0
    tp: float = 0.0
    profit: float = 0.0
    swap: float = 0.0
    magic: int = 0


@dataclass(frozen=True)
class BridgeCommand:
    """Something the platform asks a bridge to do; delivered at most once, dead after expiry."""

    id: UUID
    org_id: UUID
    bridge_id: UUID
    kind: str
    payload: dict[str, object]
    created_by: UUID
    created_at: datetime
    expires_at: datetime
    seq: int = 0
    delivered_at: datetime | None = None
    acked_at: datetime | None = None
