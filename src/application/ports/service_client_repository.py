"""Storage of service clients (the internal workers the vault serves)."""

from datetime import datetime
from typing import Protocol
from uuid import UUID

from domain.service_clients import ServiceClient


class ServiceClientRepository(Protocol):
    async def add(self, client: ServiceClient) -> None:
        """Raises DuplicateName when the name is taken."""
        ...

    async def get(self, client_id: UUID) -> ServiceClient | None: ...

    async def get_by_name(self, name: str) -> ServiceClient | None: ...

    async def all(self) -> list[ServiceClient]: ...

    async def disable(self, client_id: UUID, now: datetime) -> bool: ...

    async def rotate_secret(self, client_id: UUID, new_hash: str, previous_valid_until: datetime) -> bool: ...
