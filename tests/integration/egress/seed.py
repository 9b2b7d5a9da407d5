"""What the egress ledger tests share: a storage backend per run, users to allocate to, and a
pool recorded in the ledger."""

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.unit_of_work import SqlUnitOfWorkFactory
from application.ports.egress_provider import ProviderAddress
from domain.egress import SYSTEM
from tests.integration.storage_seed import new_org, new_user

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


def pool(count: int, first: int = 2) -> list[ProviderAddress]:
    """Loopback addresses (they answer locally on Linux): 127.0.0.2 onwards."""
    assert first + count <= 255
    return [ProviderAddress(f"127.0.0.{n}", f"127.0.0.{n}") for n in range(first, first + count)]


async def seed_users(engine: AsyncEngine, count: int, plan: str = "pro") -> list[uuid.UUID]:
    uow_factory = SqlUnitOfWorkFactory(engine)
    ids = []
    async with uow_factory() as uow:
        for _ in range(count):
            org = new_org(NOW)
            await uow.orgs.add(org)
            user = new_user(org, NOW)
            user.plan = plan
            await uow.users.add(user)
            ids.append(user.id)
        await uow.commit()
    return ids


async def seed_pool(engine: AsyncEngine, addresses: list[ProviderAddress]) -> None:
    async with SqlUnitOfWorkFactory(engine)() as uow:
        for found in addresses:
            await uow.egress.add(found, NOW, SYSTEM, "seeded by the test")
        await uow.commit()
