"""PostgreSQL row-level security, the second wall between tenants: connected as the service's own
unprivileged role, a query that forgets its `org_id` filter still sees, changes and creates nothing
of any org but the one its transaction declared."""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Table, delete, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.storage.authz_repository import SqlAuthzRepository
from adapters.storage.database import create_engine
from adapters.storage.row_security import RowSecurity
from adapters.storage.tables import (
    group_members,
    group_roles,
    groups,
    invitations,
    member_roles,
    memberships,
    organisations,
    roles,
    users,
)
from adapters.storage.unit_of_work import SqlUnitOfWork

pytestmark = pytest.mark.postgres

ORG_SCOPED: tuple[Table, ...] = (roles, member_roles, groups, group_members, group_roles, invitations)
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Tenant:
    org_id: uuid.UUID
    user_id: uuid.UUID
    role_id: uuid.UUID
    group_id: uuid.UUID


@dataclass(frozen=True)
class Database:
    owner: AsyncEngine  # superuser: bypasses row-level security, used to seed and to look behind it
    app: AsyncEngine  # the service role: row-level security applies
    a: Tenant
    b: Tenant
    both: uuid.UUID  # a user who is a member of both orgs


async def seed_tenant(conn: AsyncConnection, name: str, extra_member: uuid.UUID) -> Tenant:
    t = Tenant(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
    await conn.execute(
        insert(organisations).values(id=t.org_id, name=name, personal=False, status="active", created_at=NOW)
    )
    await conn.execute(insert(users).values(**user_row(t.user_id, f"{name}-{t.user_id.hex[:8]}@example.com")))
    for user_id in (t.user_id, extra_member):
        await conn.execute(
            insert(memberships).values(org_id=t.org_id, user_id=user_id, role="administrator", created_at=NOW)
        )
    await conn.execute(
        insert(roles).values(
            id=t.role_id,
            org_id=t.org_id,
            name=f"{name} role",
            description="",
            permissions=["orders:create"],
            created_at=NOW,
        )
    )
    await conn.execute(
        insert(groups).values(
            id=t.group_id, org_id=t.org_id, name=f"{name} group", description="", created_at=NOW
        )
    )
    await conn.execute(
        insert(member_roles).values(org_id=t.org_id, user_id=t.user_id, role_id=t.role_id, created_at=NOW)
    )
    await conn.execute(
        insert(group_members).values(org_id=t.org_id, group_id=t.group_id, user_id=t.user_id, created_at=NOW)
    )
    await conn.execute(
        insert(group_roles).values(org_id=t.org_id, group_id=t.group_id, role_id=t.role_id, created_at=NOW)
    )
    await conn.execute(
        insert(invitations).values(
            id=uuid.uuid4(),
            org_id=t.org_id,
            email=f"invitee-{name}@example.com",
            org_role="member",
            role_ids=[str(t.role_id)],
            group_ids=[str(t.group_id)],
            token_hash=uuid.uuid4().hex,
            invited_by=t.user_id,
            created_at=NOW,
            expires_at=NOW + timedelta(days=7),
        )
    )
    return t


def user_row(user_id: uuid.UUID, email: str) -> dict[str, object]:
    return {
        "id": user_id,
        "email": email,
        "display_name": "Test",
        "password_hash": "x",
        "pepper_version": "v1",
        "platform_role": "user",
        "status": "active",
        "created_at": NOW,
    }


@pytest.fixture
async def db(fresh_pg_url: str, app_pg_url: str) -> AsyncIterator[Database]:
    owner = create_engine(fresh_pg_url, pool_size=2)
    app = create_engine(app_pg_url, pool_size=2)
    try:
        both = uuid.uuid4()
        async with owner.begin() as conn:
            await conn.execute(insert(users).values(**user_row(both, f"both-{both.hex[:8]}@example.com")))
            a = await seed_tenant(conn, "a", both)
            b = await seed_tenant(conn, "b", both)
        yield Database(owner, app, a, b, both)
    finally:
        await app.dispose()
        await owner.dispose()


async def declare(conn: AsyncConnection, setting: str, value: uuid.UUID) -> None:
    await conn.execute(text("SELECT set_config(:name, :value, true)"), {"name": setting, "value": str(value)})


async def org_ids_seen(conn: AsyncConnection, table: Table) -> list[uuid.UUID]:
    # Deliberately no WHERE: this is the query that forgot its tenant filter.
    return [row.org_id for row in await conn.execute(select(table))]


async def test_the_service_role_is_subject_to_row_level_security(db: Database) -> None:
    async with db.app.connect() as conn:
        bypass = await conn.scalar(
            text("SELECT rolbypassrls OR rolsuper FROM pg_roles WHERE rolname = current_user")
        )
        assert bypass is False
        for table in (*ORG_SCOPED, memberships):
            enabled = await conn.scalar(
                text("SELECT relrowsecurity FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table.name}
            )
            assert enabled is True, table.name


async def test_an_unfiltered_select_sees_only_the_rows_of_the_declared_org(db: Database) -> None:
    async with db.owner.connect() as conn:
        for table in ORG_SCOPED:  # behind the wall both orgs have rows in every table
            assert set(await org_ids_seen(conn, table)) == {db.a.org_id, db.b.org_id}, table.name
    for tenant in (db.a, db.b):
        async with db.app.begin() as conn:
            await declare(conn, "bulwark.org_id", tenant.org_id)
            for table in ORG_SCOPED:
                seen = await org_ids_seen(conn, table)
                assert seen and set(seen) == {tenant.org_id}, table.name
            rows = (await conn.execute(text("SELECT * FROM roles"))).all()
            assert [row.id for row in rows] == [tenant.role_id]
            assert set(await org_ids_seen(conn, memberships)) == {tenant.org_id}


async def test_without_a_declared_org_every_org_scoped_table_looks_empty(db: Database) -> None:
    async with db.app.begin() as conn:
        for table in (*ORG_SCOPED, memberships):
            assert await conn.scalar(select(func.count()).select_from(table)) == 0, table.name
        # The org table itself is not org-scoped: it is how the service finds an org at all.
        assert await conn.scalar(select(func.count()).select_from(organisations)) == 2


async def test_the_declared_org_lasts_only_for_its_transaction(db: Database) -> None:
    async with db.app.connect() as conn:
        async with conn.begin():
            await declare(conn, "bulwark.org_id", db.a.org_id)
            assert await org_ids_seen(conn, roles) == [db.a.org_id]
        # Same pooled connection, next transaction: nothing is declared any more.
        async with conn.begin():
            assert await org_ids_seen(conn, roles) == []


async def test_writing_another_orgs_rows_while_scoped_to_one_org_is_refused(db: Database) -> None:
    async with db.app.connect() as conn:
        for table, values in (
            (
                roles,
                {"id": uuid.uuid4(), "name": "planted", "description": "", "permissions": ["billing:read"]},
            ),
            (groups, {"id": uuid.uuid4(), "name": "planted", "description": ""}),
            (group_roles, {"group_id": db.b.group_id, "role_id": db.b.role_id}),
        ):
            # A role/group row cannot be planted in org B; group_roles already has this pair in B,
            # so the policy check must fire before (or instead of) the key check.
            transaction = await conn.begin()
            try:
                await declare(conn, "bulwark.org_id", db.a.org_id)
                with pytest.raises(DBAPIError, match="row-level security"):
                    await conn.execute(insert(table).values(org_id=db.b.org_id, created_at=NOW, **values))
            finally:
                await transaction.rollback()

        async with conn.begin():
            await declare(conn, "bulwark.org_id", db.a.org_id)
            # Unfiltered updates and deletes touch only org A's rows.
            renamed = await conn.execute(update(roles).values(name="renamed"))
            assert renamed.rowcount == 1
            removed = await conn.execute(delete(group_members))
            assert removed.rowcount == 1
            # Moving one of A's rows into org B is refused too (WITH CHECK on the new row).
            with pytest.raises(DBAPIError, match="row-level security"):
                await conn.execute(update(groups).values(org_id=db.b.org_id))

    async with db.owner.connect() as conn:
        b_role = (await conn.execute(select(roles).where(roles.c.id == db.b.role_id))).one()
        assert b_role.name == "b role"
        assert (
            await conn.scalar(
                select(func.count()).select_from(group_members).where(group_members.c.org_id == db.b.org_id)
            )
            == 1
        )
        assert (
            await conn.scalar(select(func.count()).select_from(roles).where(roles.c.name == "planted")) == 0
        )


async def test_memberships_are_visible_to_their_own_user_across_orgs_and_to_no_one_else(db: Database) -> None:
    async with db.app.begin() as conn:
        await declare(conn, "bulwark.user_id", db.both)
        seen = (await conn.execute(select(memberships))).all()
        assert {(row.org_id, row.user_id) for row in seen} == {(db.a.org_id, db.both), (db.b.org_id, db.both)}
        # Seeing one's own memberships does not open the org-scoped tables.
        assert await org_ids_seen(conn, roles) == []
        # Nor may a user add themselves to an org they only "see" through their own row.
        with pytest.raises(DBAPIError, match="row-level security"):
            await conn.execute(
                insert(memberships).values(
                    org_id=db.b.org_id, user_id=db.a.user_id, role="administrator", created_at=NOW
                )
            )
    async with db.app.begin() as conn:
        await declare(conn, "bulwark.user_id", db.a.user_id)
        assert [(row.org_id, row.user_id) for row in await conn.execute(select(memberships))] == [
            (db.a.org_id, db.a.user_id)
        ]


async def test_the_authz_repository_declares_each_org_it_reads_so_unfiltered_queries_follow_it(
    db: Database,
) -> None:
    async with db.app.begin() as conn:
        repo = SqlAuthzRepository(conn, RowSecurity(conn))
        assert [r.id for r in await repo.custom_roles(db.a.org_id)] == [db.a.role_id]
        # Whatever the repository last declared is all that an unfiltered query can reach.
        assert await org_ids_seen(conn, roles) == [db.a.org_id]
        assert [g.id for g in await repo.groups(db.b.org_id)] == [db.b.group_id]
        assert await org_ids_seen(conn, roles) == [db.b.org_id]
        # Asking org A for org B's objects finds nothing, as if they did not exist.
        assert await repo.custom_role(db.a.org_id, db.b.role_id) is None
        assert await repo.group(db.a.org_id, db.b.group_id) is None
        assert await repo.membership(db.a.org_id, db.b.user_id) is None
        assert not await repo.existing_ids(db.a.org_id, [db.b.role_id], [])


async def test_an_autocommit_unit_refuses_org_scoped_reads_instead_of_seeing_nothing(db: Database) -> None:
    # The declaration lasts one transaction; in autocommit that is one statement, so the next
    # query would see no rows at all and a member would look like a stranger.
    async with SqlUnitOfWork(db.app, autocommit=True) as uow:
        with pytest.raises(RuntimeError, match="transaction"):
            await uow.orgs.memberships_of(db.both)
        with pytest.raises(RuntimeError, match="transaction"):
            await uow.authz.groups(db.a.org_id)
    async with SqlUnitOfWork(db.app) as uow:
        assert {org.id for _, org in await uow.orgs.memberships_of(db.both)} == {db.a.org_id, db.b.org_id}
