"""Service clients: the platform's internal workers, authenticated by the credential vault."""

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

BROKER_CREDENTIALS_USE = "broker_credentials:use"
INTEGRATION_SECRETS_USE = "integration_secrets:use"
SERVICE_SCOPES = frozenset({BROKER_CREDENTIALS_USE, INTEGRATION_SECRETS_USE})


@dataclass(frozen=True)
class ServiceClient:
    id: UUID
    name: str
    scopes: frozenset[str]
    secret_hash: str
    created_at: datetime
    previous_secret_hash: str | None = None
    previous_valid_until: datetime | None = None
    disabled_at: datetime | None = None

    @property
    def is_disabled(self) -> bool:
        return self.disabled_at is not None

    def accepted_hashes(self, now: datetime) -> tuple[str, ...]:
        """The current secret, and the previous one inside its rotation overlap."""
        if self.previous_secret_hash and self.previous_valid_until and now < self.previous_valid_until:
            return (self.secret_hash, self.previous_secret_hash)
        return (self.secret_hash,)

    def granted(self, requested: frozenset[str] | None) -> frozenset[str] | None:
        """The scopes a token may carry: all of the client's when none are asked for, None when
        any asked-for scope is not the client's (OAuth's invalid_scope)."""
        if requested is None:
            return self.scopes
        return requested if requested <= self.scopes else None
