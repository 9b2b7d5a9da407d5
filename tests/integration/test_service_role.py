"""grant_service_role against real PostgreSQL: the role it makes neither is a superuser nor
bypasses row-level security, may not touch the audit log's past, is made once, and bad names
change nothing."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.database import create_engine
from adapters.storage.service_role import ServiceRoleError, grant_service_role


@pytest.fixture
async def owner(fresh_pg_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(fresh_pg_url, pool_size=2)
    try:
        yield engine
    finally:
        await engine.dispose()


async def role_exists(engine: AsyncEngine, role: str) -> bool:
    async with engine.connect() as conn:
        found = await conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname::text = :r"), {"r": role})
        return found.first() is not None


async def test_the_role_is_made_once_without_bypassing_row_level_security(
    owner: AsyncEngine, fresh_pg_url: str
) -> None:
    role = f"bulwark_svc_{uuid.uuid4().hex[:8]}"
    try:
        # Two at once, as parallel deployments (or test workers) may run it: one creates, both grant.
        first, second = await asyncio.gather(grant_service_role(owner, role), grant_service_role(owner, role))
        assert sorted([first, second]) == [False, True]
        assert await grant_service_role(owner, role) is False
        async with owner.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = :r"),
                    {"r": role},
                )
            ).one()
        assert (row.rolsuper, row.rolbypassrls, row.rolcanlogin) == (False, False, True)

        served = create_engine(make_url(fresh_pg_url).set(username=role).render_as_string(False), pool_size=1)
        try:
            async with served.begin() as conn:
                # The data privileges (row-level security itself is test_row_level_security's).
                await conn.execute(text("SELECT count(*) FROM users"))
            for statement in ("UPDATE audit_events SET action = 'x'", "DELETE FROM audit_events"):
                with pytest.raises(DBAPIError) as refused:
                    async with served.begin() as conn:
                        await conn.execute(text(statement))
                assert getattr(refused.value.orig, "sqlstate", None) == "42501"  # insufficient_privilege
        finally:
            await served.dispose()
    finally:
        async with owner.begin() as conn:
            await conn.execute(text(f'DROP OWNED BY "{role}"'))
            await conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))


@pytest.mark.parametrize("name", ["Bulwark", "svc-role", 'x"; DROP TABLE users; --', "", "a" * 64, "1abc"])
async def test_names_that_are_not_plain_identifiers_are_refused_and_nothing_is_made(
    owner: AsyncEngine, name: str
) -> None:
    with pytest.raises(ServiceRoleError):
        await grant_service_role(owner, name)
    if name:
        assert not await role_exists(owner, name)
    async with owner.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM users"))).scalar_one() >= 0


async def test_a_role_that_bypasses_row_level_security_is_refused(owner: AsyncEngine) -> None:
    with pytest.raises(ServiceRoleError, match="bypasses row-level security"):
        await grant_service_role(owner, "postgres")


async def test_sqlite_has_no_roles(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        with pytest.raises(ServiceRoleError, match="only PostgreSQL"):
            await grant_service_role(engine, "bulwark_app")
    finally:
        await engine.dispose()
