"""Broker connections: a user's OAuth grant to a broker, held for an organisation.

The tokens themselves never appear here: the domain only knows whether a connection may be used,
whether its access token is due for refresh, and which accounts it reaches."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

LABEL_MAX = 100
OAUTH_STATE_TTL = timedelta(minutes=10)


class ConnectionKind(StrEnum):
    CTRADER = "ctrader"


class ConnectionStatus(StrEnum):
    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"
    REVOKED = "revoked"


class CtraderScope(StrEnum):
    TRADING = "trading"  # full access: may place orders
    ACCOUNTS = "accounts"  # read-only


@dataclass(frozen=True)
class ConnectedAccount:
    ctid_trader_account_id: int
    is_live: bool
    trader_login: int | None
    broker: str


@dataclass(frozen=True)
class SealedCredential:
    """A ciphertext only the credential vault can open, and the key version that sealed it."""

    key_id: str
    ciphertext: bytes = field(repr=False)


@dataclass(frozen=True)
class BrokerConnection:
    id: UUID
    org_id: UUID
    kind: ConnectionKind
    label: str
    status: ConnectionStatus
    scope: CtraderScope
    accounts: tuple[ConnectedAccount, ...]
    created_by: UUID
    created_at: datetime
    access_expires_at: datetime | None
    last_refreshed_at: datetime | None
    # Bumped whenever the sealed tokens change: a refresh only lands on the generation it read.
    generation: int = 0
    refresh_claimed_at: datetime | None = None
    sealed: SealedCredential | None = field(default=None, repr=False)

    @property
    def is_usable(self) -> bool:
        return self.status is ConnectionStatus.ACTIVE and self.sealed is not None

    def due_for_refresh(self, now: datetime, margin: timedelta) -> bool:
        return self.access_expires_at is None or self.access_expires_at - now <= margin

    def is_expired(self, now: datetime) -> bool:
        return self.access_expires_at is None or self.access_expires_at <= now

    def refresh_is_stale(self, now: datetime, patience: timedelta) -> bool:
        """A claim older than any broker call can take: its holder died mid-refresh, so the
        refresh token may have been spent at the broker and nobody knows the new one."""
        return self.refresh_claimed_at is not None and now - self.refresh_claimed_at > patience


@dataclass(frozen=True)
class OAuthState:
    """A pending authorisation: the browser comes back with `state`, and only the digest is kept."""

    state_hash: str
    user_id: UUID
    org_id: UUID
    session_id: UUID
    scope: CtraderScope
    connection_id: UUID | None  # re-authorising an existing connection keeps its id
    # Digest of a nonce kept in a cookie of the browser that started the flow: a state handed
    # to someone else's browser (OAuth login CSRF) cannot complete there.
    browser_hash: str
    created_at: datetime
    expires_at: datetime

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at


@dataclass(frozen=True)
class IntegrationSecret:
    id: UUID
    org_id: UUID
    name: str
    kind: str
    created_by: UUID
    created_at: datetime
    sealed: SealedCredential | None = field(default=None, repr=False)


def default_label(accounts: tuple[ConnectedAccount, ...]) -> str:
    """From what the broker says of the accounts: only printable text (it goes into mails)."""
    if not accounts:
        return "cTrader"
    first = accounts[0]
    login = first.trader_login if first.trader_login is not None else first.ctid_trader_account_id
    more = f" (+{len(accounts) - 1})" if len(accounts) > 1 else ""
    broker = "".join(ch for ch in first.broker if ch.isprintable())[:40]
    return f"cTrader {broker} {login}{more}"[:LABEL_MAX]
