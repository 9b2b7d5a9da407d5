"""The vault's hot read: a broker connection with everything an access is decided on."""

from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from domain.brokers import BrokerConnection


@dataclass(frozen=True)
class AccessView:
    connection: BrokerConnection
    org_disabled: bool
    owner_suspended: bool  # also when the owner's account is gone
    owner_is_member: bool
    client_usable: bool  # the service client exists and is not disabled


class VaultReader(Protocol):
    async def access_view(self, connection_id: UUID, client_id: UUID) -> AccessView | None:
        """None for an unknown connection or one holding no ciphertext (revoked)."""
        ...
