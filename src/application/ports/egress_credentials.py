"""Signing and checking egress credentials. The vault signs (it holds the private keys); the
Squid helper on the egress host only verifies (public keys), so it cannot mint one."""

from datetime import datetime
from typing import Protocol
from uuid import UUID

from domain.egress_credentials import EgressCredential, EgressRefusal


class EgressCredentialRefused(Exception):
    def __init__(self, reason: EgressRefusal) -> None:
        super().__init__(reason.value)
        self.reason = reason


class EgressCredentialSigner(Protocol):
    def sign(self, user_id: UUID, address: str, expires_at: datetime) -> str: ...


class EgressCredentialVerifier(Protocol):
    def verify(self, token: str) -> EgressCredential:
        """The credential the token carries, signature checked (not its expiry: `admission` does
        that against the caller's clock). Raises EgressCredentialRefused (malformed, forged)."""
        ...
