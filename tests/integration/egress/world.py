"""A ledger wired for tests: real storage (SQLite and PostgreSQL as the service role), the use
cases and the job, a pinned clock, a recording mailer, and in-memory provider and gateway."""

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.tables import egress_addresses, users
from adapters.storage.unit_of_work import SqlUnitOfWorkFactory
from application.egress_job import RunEgressJob
from application.egress_ledger import EgressLedger, EgressPolicy, EgressPorts
from application.ports.egress_provider import EgressProvider
from domain.egress import EgressState
from domain.plans import PlanCatalog
from domain.platform_admins import PlatformAdmin
from domain.users import UserStatus
from tests.egress_doubles import InMemoryGateway
from tests.integration.egress.seed import NOW, seed_users
from tests.unit.fakes import FakeClock, FakeMailer

PLANS = PlanCatalog.parse("free,pro,desk", "pro,desk")
POLICY = EgressPolicy(
    downgrade_grace=timedelta(days=7),
    cooldown=timedelta(days=7),
    stuck_after=timedelta(hours=6),
    paused_stale_after=timedelta(days=30),
)


@dataclass
class EgressWorld:
    engine: AsyncEngine
    clock: FakeClock
    mailer: FakeMailer
    gateway: InMemoryGateway
    provider: EgressProvider
    ports: EgressPorts
    ledger: EgressLedger
    job: RunEgressJob

    @classmethod
    def wire(
        cls, engine: AsyncEngine, provider: EgressProvider, gateway: InMemoryGateway | None = None
    ) -> "EgressWorld":
        clock, mailer = FakeClock(NOW), FakeMailer()
        gateway = gateway or InMemoryGateway()
        ports = EgressPorts(
            uow=SqlUnitOfWorkFactory(engine),
            clock=clock,
            provider=provider,
            gateway=gateway,
            mailer=mailer,
            plans=PLANS,
            policy=POLICY,
        )
        ledger = EgressLedger(ports)
        return cls(engine, clock, mailer, gateway, provider, ports, ledger, RunEgressJob(ports, ledger))

    async def users(self, count: int, plan: str = "pro") -> list[uuid.UUID]:
        return await seed_users(self.engine, count, plan)

    async def admin(self) -> str:
        (user_id,) = await seed_users(self.engine, 1, "free")
        async with self.ports.uow() as uow:
            await uow.platform_admins.add(
                PlatformAdmin(user_id, "x", "p", b"e", NOW, factor_confirmed_at=NOW)
            )
            user = await uow.users.get(user_id)
            await uow.commit()
        assert user is not None
        return user.email

    async def set_user(self, user_id: uuid.UUID, **values: object) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(update(users).where(users.c.id == user_id).values(**values))

    async def close(self, user_id: uuid.UUID) -> None:
        await self.set_user(user_id, status=str(UserStatus.CLOSED))

    async def ledger_rows(self) -> dict[str, tuple[EgressState, uuid.UUID | None]]:
        async with self.engine.connect() as connection:
            rows = await connection.execute(select(egress_addresses))
            return {r.address: (EgressState(r.state), r.user_id) for r in rows}

    async def live(self, user_id: uuid.UUID) -> str | None:
        async with self.ports.uow() as uow:
            found = await uow.egress.live_for_user(user_id)
        return None if found is None else found.address
