"""The egress credential: what a worker presents to the egress gateway (Squid) in
`Proxy-Authorization` to leave from its user's dedicated address. Bound to one user and one
address, minutes long; the gateway admits it only while the ledger still binds that address to
that user, so a detach stops it at once whatever its remaining life."""

import base64
import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple
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


class ProxyUsername(NamedTuple):
    user_id: UUID
    address: str
    fingerprint: str  # of the one credential this username goes with


FINGERPRINT_LENGTH = 22  # base64url characters: 132 bits of the credential's SHA-256
_FINGERPRINT_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def credential_fingerprint(credential: str) -> str:
    digest = hashlib.sha256(credential.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:FINGERPRINT_LENGTH]


def proxy_username(user_id: UUID, address: str, credential: str) -> str:
    """`<user>@<address>~<fingerprint of the credential>`: it names user and address, so Squid's
    own views (active requests, the access log) say whose every tunnel is and where it leaves
    from; and it is unguessable without the credential. Squid's auth cache keeps one password per
    username and marks the entry good when any pending check of it succeeds, so with a username
    anyone could spell, a bogus login sent during a genuine one's check was admitted with it."""
    return f"{user_id}@{address}~{credential_fingerprint(credential)}"


def parse_holder(user: str, address: str) -> tuple[UUID, str] | None:
    """A user id and an IPv4 address, each in its one canonical spelling (Squid compares the
    username as text), or None."""
    try:
        user_id = UUID(user)
        parsed = ipaddress.IPv4Address(address)
    except ValueError:
        return None
    if str(user_id) != user or str(parsed) != address:
        return None
    return user_id, address


def parse_proxy_username(text: str) -> ProxyUsername | None:
    user, sep, rest = text.partition("@")
    address, tilde, fingerprint = rest.partition("~")
    if not sep or not tilde or len(fingerprint) != FINGERPRINT_LENGTH:
        return None
    if not set(fingerprint) <= _FINGERPRINT_ALPHABET:
        return None
    holder = parse_holder(user, address)
    return None if holder is None else ProxyUsername(holder[0], holder[1], fingerprint)


def check_lifetime(lifetime: timedelta) -> timedelta:
    if not MIN_LIFETIME <= lifetime <= MAX_LIFETIME:
        raise ValueError(f"an egress credential lives {MIN_LIFETIME} to {MAX_LIFETIME}, not {lifetime}")
    return lifetime


def admission(
    credential: EgressCredential, username: str, presented: str, live_address: str | None, now: datetime
) -> EgressRefusal | None:
    """None: admit, leaving from `credential.address`. Otherwise why not. `presented` is the
    credential as the worker sent it (the one `credential` was verified from)."""
    if credential.expires_at <= now:
        return EgressRefusal.EXPIRED
    expected = proxy_username(credential.user_id, credential.address, presented)
    if not hmac.compare_digest(username.encode(), expected.encode()):
        return EgressRefusal.MISMATCH
    if live_address is None or live_address != credential.address:
        return EgressRefusal.UNBOUND
    return None
