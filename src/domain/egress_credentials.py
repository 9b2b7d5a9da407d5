"""The egress credential: what a worker presents to the egress gateway (Squid) in
`Proxy-Authorization` to leave from its user's dedicated address. Bound to one user and one
address, minutes long; the gateway admits it only while the ledger still binds that address to
that user, so a detach stops it at once whatever its remaining life."""

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

MIN_LIFETIME = timedelta(minutes=1)
MAX_LIFETIME = timedelta(minutes=60)


class EgressRefusal(StrEnum):
    MALFORMED = "malformed"  # not a username/credential pair this gateway reads
    FORGED = "forged"  # the signature, issuer or audience is wrong
    EXPIRED = "expired"
    MISMATCH = "mismatch"  # the username names another user or address than the credential
    UNBOUND = "unbound"  # the ledger no longer binds this address to this user (detached)


@dataclass(frozen=True)
class EgressCredential:
    user_id: UUID
    address: str
    expires_at: datetime

    @property
    def username(self) -> str:
        return proxy_username(self.user_id, self.address)


def proxy_username(user_id: UUID, address: str) -> str:
    """The proxy username names both, so Squid's own views (active requests, the access log)
    say which user and which address every tunnel belongs to."""
    return f"{user_id}@{address}"


def parse_proxy_username(text: str) -> tuple[UUID, str] | None:
    user, sep, address = text.partition("@")
    if not sep:
        return None
    try:
        user_id = UUID(user)
        parsed = ipaddress.IPv4Address(address)
    except ValueError:
        return None
    if str(user_id) != user or str(parsed) != address:
        return None  # one spelling only: the username is compared as text by Squid's caches
    return user_id, address


def check_lifetime(lifetime: timedelta) -> timedelta:
    if not MIN_LIFETIME <= lifetime <= MAX_LIFETIME:
        raise ValueError(f"an egress credential lives {MIN_LIFETIME} to {MAX_LIFETIME}, not {lifetime}")
    return lifetime


def admission(
    credential: EgressCredential, username: str, live_address: str | None, now: datetime
) -> EgressRefusal | None:
    """None: admit, leaving from `credential.address`. Otherwise why not."""
    if credential.expires_at <= now:
        return EgressRefusal.EXPIRED
    if username != credential.username:
        return EgressRefusal.MISMATCH
    if live_address is None or live_address != credential.address:
        return EgressRefusal.UNBOUND
    return None
