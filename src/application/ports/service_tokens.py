"""Access tokens for service clients: JWTs per RFC 9068 (`typ: at+jwt`) with the vault's own
audience and keys, so neither a user token nor a service token crosses to the other side."""

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID


@dataclass(frozen=True)
class ServiceToken:
    client_id: UUID
    scopes: frozenset[str]
    jti: str
    expires_at: datetime


@dataclass(frozen=True)
class IssuedServiceToken:
    token: str
    expires_in: int


class ServiceTokenIssuer(Protocol):
    def issue(self, client_id: UUID, scopes: frozenset[str]) -> IssuedServiceToken: ...

    def verify(self, token: str) -> ServiceToken:
        """Raises InvalidServiceToken for anything but a live token of this vault."""
        ...


class InvalidServiceToken(Exception):
    """Not a live service token of this vault."""
