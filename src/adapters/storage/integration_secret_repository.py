"""Integration secrets in SQL (org-scoped, row-level security)."""

from typing import Any
from uuid import UUID

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.storage.row_security import RowSecurity
from adapters.storage.tables import integration_secrets
from application.ports.integration_secret_repository import DuplicateName
from domain.brokers import IntegrationSecret, SealedCredential

_S = integration_secrets.c


def _to_secret(row: Any) -> IntegrationSecret:
    return IntegrationSecret(
        id=row.id,
        org_id=row.org_id,
        name=row.name,
        kind=row.kind,
        created_by=row.created_by,
        created_at=row.created_at,
        sealed=SealedCredential(key_id=row.sealed_key_id, ciphertext=bytes(row.sealed_value)),
    )


class SqlIntegrationSecretRepository:
    def __init__(self, connection: AsyncConnection, rls: RowSecurity) -> None:
        self.connection = connection
        self.rls = rls

    async def add(self, secret: IntegrationSecret) -> None:
        assert secret.sealed is not None, "an integration secret is stored sealed"
        await self.rls.org(secret.org_id)
        try:
            async with self.connection.begin_nested():
                await self.connection.execute(
                    insert(integration_secrets).values(
                        id=secret.id,
                        org_id=secret.org_id,
                        name=secret.name,
                        kind=secret.kind,
                        created_by=secret.created_by,
                        created_at=secret.created_at,
                        sealed_key_id=secret.sealed.key_id,
                        sealed_value=secret.sealed.ciphertext,
                    )
                )
        except IntegrityError as error:
            raise DuplicateName(secret.name) from error

    async def get(self, org_id: UUID, secret_id: UUID) -> IntegrationSecret | None:
        await self.rls.org(org_id)
        query = select(integration_secrets).where((_S.org_id == org_id) & (_S.id == secret_id))
        row = (await self.connection.execute(query)).first()
        return None if row is None else _to_secret(row)

    async def in_org(self, org_id: UUID) -> list[IntegrationSecret]:
        await self.rls.org(org_id)
        query = select(integration_secrets).where(_S.org_id == org_id).order_by(_S.name)
        return [_to_secret(row) for row in await self.connection.execute(query)]

    async def delete(self, org_id: UUID, secret_id: UUID) -> bool:
        await self.rls.org(org_id)
        result = await self.connection.execute(
            delete(integration_secrets).where((_S.org_id == org_id) & (_S.id == secret_id))
        )
        return bool(result.rowcount == 1)

    async def reseal(self, org_id: UUID, secret_id: UUID, old_key_id: str, sealed: SealedCredential) -> bool:
        await self.rls.org(org_id)
        result = await self.connection.execute(
            update(integration_secrets)
            .where((_S.org_id == org_id) & (_S.id == secret_id) & (_S.sealed_key_id == old_key_id))
            .values(sealed_key_id=sealed.key_id, sealed_value=sealed.ciphertext)
        )
        return bool(result.rowcount == 1)
