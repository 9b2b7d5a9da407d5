from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any
from uuid import UUID

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.storage.row_security import RowSecurity
from adapters.storage.tables import memberships, organisations
from application.ports.unit_of_work import OrgPage
from domain.orgs import Membership, Organisation, OrgRole, OrgStatus


def _to_org(row: Any) -> Organisation:
    return Organisation(
        id=row.id,
        name=row.name,
        created_at=row.created_at,
        personal=row.personal,
        status=OrgStatus(row.status),
        require_2fa=row.require_2fa,
        trust_sso_mfa=bool(getattr(row, "trust_sso_mfa", False)),
    )


def org_from_mapping(values: Mapping[str, Any]) -> Organisation:
    return _to_org(SimpleNamespace(**values))


# Built once: every login and org switch asks.
_MEMBERSHIPS_OF = (
    select(memberships, organisations)
    .join(organisations, organisations.c.id == memberships.c.org_id)
    .where(memberships.c.user_id == bindparam("user_id"))
    .order_by(memberships.c.created_at, organisations.c.name)
)


class SqlOrgRepository:
    def __init__(self, connection: AsyncConnection, rls: RowSecurity) -> None:
        self.connection = connection
        self.rls = rls

    async def add(self, org: Organisation) -> None:
        await self.connection.execute(
            insert(organisations).values(
                id=org.id,
                name=org.name,
                personal=org.personal,
                status=str(org.status),
                require_2fa=org.require_2fa,
                trust_sso_mfa=org.trust_sso_mfa,
                created_at=org.created_at,
            )
        )

    async def lock(self, org_id: UUID) -> None:
        """Serialises changes that count the org's members (the last-administrator rule). SQLite
        already holds the write lock from BEGIN IMMEDIATE."""
        if self.connection.dialect.name == "postgresql":
            await self.connection.execute(
                select(organisations.c.id).where(organisations.c.id == org_id).with_for_update()
            )

    async def get(self, org_id: UUID) -> Organisation | None:
        query = select(organisations).where(organisations.c.id == org_id)
        row = (await self.connection.execute(query)).first()
        return _to_org(row) if row else None

    async def update(self, org: Organisation) -> None:
        await self.connection.execute(
            update(organisations)
            .where(organisations.c.id == org.id)
            .values(
                name=org.name,
                status=str(org.status),
                require_2fa=org.require_2fa,
                trust_sso_mfa=org.trust_sso_mfa,
            )
        )

    async def add_membership(self, membership: Membership) -> None:
        await self.rls.org(membership.org_id)
        await self.connection.execute(
            insert(memberships).values(
                org_id=membership.org_id,
                user_id=membership.user_id,
                role=str(membership.role),
                created_at=membership.created_at,
            )
        )

    async def memberships_of(self, user_id: UUID) -> list[tuple[Membership, Organisation]]:
        await self.rls.user(user_id)
        result = []
        for row in (await self.connection.execute(_MEMBERSHIPS_OF, {"user_id": user_id})).mappings():
            membership = Membership(
                org_id=row["org_id"],
                user_id=row["user_id"],
                role=OrgRole(row["role"]),
                created_at=row["created_at"],
            )
            org = Organisation(
                id=row["id"],
                name=row["name"],
                created_at=row[organisations.c.created_at],
                personal=row["personal"],
                status=OrgStatus(row["status"]),
                require_2fa=row["require_2fa"],
                trust_sso_mfa=row["trust_sso_mfa"],
            )
            result.append((membership, org))
        return result

    async def page(self, page: OrgPage) -> list[Organisation]:
        query = select(organisations)
        if page.after is not None:
            created_at, org_id = page.after
            query = query.where(
                or_(
                    organisations.c.created_at > created_at,
                    and_(organisations.c.created_at == created_at, organisations.c.id > org_id),
                )
            )
        query = query.order_by(organisations.c.created_at, organisations.c.id).limit(page.limit)
        return [_to_org(row) for row in await self.connection.execute(query)]

    async def member_count(self, org_id: UUID) -> int:
        await self.rls.org(org_id)
        query = select(func.count()).select_from(memberships).where(memberships.c.org_id == org_id)
        return int((await self.connection.execute(query)).scalar_one())
