"""Storage of the other secrets users hand us (sealed like broker tokens; org-scoped rows)."""

from typing import Protocol
from uuid import UUID

from domain.brokers import IntegrationSecret, SealedCredential


class IntegrationSecretRepository(Protocol):
    async def add(self, secret: IntegrationSecret) -> None:
        """Raises DuplicateName when the org already has a secret of that name."""
        ...

    async def get(self, org_id: UUID, secret_id: UUID) -> IntegrationSecret | None: ...

    async def in_org(self, org_id: UUID) -> list[IntegrationSecret]: ...

    async def delete(self, org_id: UUID, secret_id: UUID) -> bool: ...

    async def reseal(
        self, org_id: UUID, secret_id: UUID, old_key_id: str, sealed: SealedCredential
    ) -> bool: ...


class DuplicateName(Exception):
    """A unique name is taken."""
