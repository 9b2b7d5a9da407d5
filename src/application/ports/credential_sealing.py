"""Sealing broker credentials so that only the credential vault can open them.

The public API holds a `CredentialSealer` (public keys only); the vault holds the
`CredentialOpener` (private keys). Every ciphertext is bound to where it lives: moving it to
another row, org or purpose makes it unopenable."""

from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from domain.brokers import SealedCredential


@dataclass(frozen=True)
class CredentialContext:
    table: str
    row_id: UUID
    org_id: UUID
    purpose: str

    def info(self) -> bytes:
        return f"bulwark/sealed/v1|{self.table}|{self.row_id}|{self.org_id}|{self.purpose}".encode()


class CredentialSealer(Protocol):
    def seal(self, plaintext: bytes, context: CredentialContext) -> SealedCredential: ...


class CredentialOpener(Protocol):
    def open(self, sealed: SealedCredential, context: CredentialContext) -> bytes:
        """Raises CredentialUnreadable for a tampered, misplaced or unknown-key ciphertext."""
        ...

    def active_key_id(self) -> str: ...

    def sealer(self) -> CredentialSealer:
        """A sealer for the vault's active key (re-sealing on refresh and rotation)."""
        ...


class CredentialUnreadable(Exception):
    """A sealed credential could not be opened here."""


def broker_tokens_context(connection_id: UUID, org_id: UUID) -> CredentialContext:
    return CredentialContext("broker_connections", connection_id, org_id, "broker_tokens")


def integration_secret_context(secret_id: UUID, org_id: UUID) -> CredentialContext:
    return CredentialContext("integration_secrets", secret_id, org_id, "integration_secret")
