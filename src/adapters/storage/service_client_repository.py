"""Service clients in SQL (platform-wide rows, not org-scoped)."""

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.storage.tables import service_clients
from application.ports.integration_secret_repository import DuplicateName
from domain.service_clients import ServiceClient

_S = service_clients.c


def _to_client(row: Any) -> ServiceClient:
    return ServiceClient(
        id=row.id,
        name=row.name,
        scopes=frozenset(row.scopes),
        secret_hash=row.secret_hash,
        created_at=row.created_at,
        previous_secret_hash=row.previous_secret_hash,
        previous_valid_until=row.previous_valid_until,
        disabled_at=row.disabled_at,
    )


class SqlServiceClientRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def add(self, client: ServiceClient) -> None:
        try:
            async with self.connection.begin_nested():
                await self.connection.execute(
                    insert(service_clients).values(
                        id=client.id,
                        name=client.name,
                        scopes=sorted(client.scopes),
                        secret_hash=client.secret_hash,
                        created_at=client.created_at,
                    )
                )
        except IntegrityError as error:
            raise DuplicateName(client.name) from error

    async def get(self, client_id: UUID) -> ServiceClient | None:
        row = (await self.connection.execute(select(service_clients).where(_S.id == client_id))).first()
        return None if row is None else _to_client(row)

    async def get_by_name(self, name: str) -> ServiceClient | None:
        row = (await self.connection.execute(select(service_clients).where(_S.name == name))).first()
        return None if row is None else _to_client(row)

    async def all(self) -> list[ServiceClient]:
        rows = await self.connection.execute(select(service_clients).order_by(_S.name))
        return [_to_client(row) for row in rows]

    async def disable(self, client_id: UUID, now: datetime) -> bool:
        result = await self.connection.execute(
            update(service_clients)
            .where((_S.id == client_id) & _S.disabled_at.is_(None))
            .values(disabled_at=now)
        )
        return bool(result.rowcount == 1)

    async def rotate_secret(self, client_id: UUID, new_hash: str, previous_valid_until: datetime) -> bool:
        result = await self.connection.execute(
            update(service_clients)
            .where(_S.id == client_id)
            .values(
                previous_secret_hash=_S.secret_hash,
                previous_valid_until=previous_valid_until,
                secret_hash=new_hash,
            )
        )
        return bool(result.rowcount == 1)
