"""Migrations stairway: every revision upgrades, downgrades and upgrades again, on SQLite and on a
fresh PostgreSQL database; the audit log's append-only triggers exist after each upgrade."""

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, make_url

from adapters.storage import migrations
from adapters.storage.audit_partitions import is_audit_partition
from adapters.storage.database import create_engine
from adapters.storage.tables import audit_events, metadata

APP_TABLES = set(metadata.tables)


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(base_url: str, sql: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(base_url), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def empty_pg_url(pg_base_url: str) -> Iterator[str]:
    """A brand-new, unmigrated database of this test's own (the shared fixtures are pre-migrated)."""
    name = f"bulwark_mig_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(pg_base_url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(pg_base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def empty_sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'stairway.sqlite3'}"


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database_url(request: pytest.FixtureRequest) -> str:
    fixture = "empty_sqlite_url" if request.param == "sqlite" else "empty_pg_url"
    return str(request.getfixturevalue(fixture))


def revisions_base_to_head(url: str) -> list[tuple[str, str]]:
    """(revision, the revision to downgrade to) for every step, oldest first."""
    script = ScriptDirectory.from_config(migrations.alembic_config(url))
    steps = []
    for revision in reversed(list(script.walk_revisions("base", "heads"))):
        down = revision.down_revision
        assert down is None or isinstance(down, str), "merge revisions need their own stairway step"
        steps.append((revision.revision, down or "base"))
    return steps


def inspect(url: str, probe: Any) -> Any:
    async def run() -> Any:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(probe)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def skip_audit_partitions(name: str | None, type_: str, _parents: object) -> bool:
    return not (type_ == "table" and is_audit_partition(name))


def tables(url: str) -> set[str]:
    return set(inspect(url, lambda conn: sa.inspect(conn).get_table_names()))


def current_revision(url: str) -> str | None:
    def probe(conn: Connection) -> str | None:
        if "alembic_version" not in sa.inspect(conn).get_table_names():
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one_or_none()

    result: str | None = inspect(url, probe)
    return result


def audit_triggers(url: str) -> set[str]:
    def probe(conn: Connection) -> set[str]:
        if conn.dialect.name == "postgresql":
            sql = (
                "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE c.relname = 'audit_events' AND NOT t.tgisinternal"
            )
        else:
            sql = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_events'"
        return {str(name) for name in conn.execute(sa.text(sql)).scalars()}

    result: set[str] = inspect(url, probe)
    return result


def test_every_revision_upgrades_downgrades_and_upgrades_again(empty_database_url: str) -> None:
    url = empty_database_url
    steps = revisions_base_to_head(url)
    assert steps, "no migrations found"
    for revision, down in steps:
        migrations.upgrade(url, revision)
        assert current_revision(url) == revision
        migrations.downgrade(url, down)
        assert current_revision(url) == (None if down == "base" else down)
        migrations.upgrade(url, revision)
        assert current_revision(url) == revision
    head = steps[-1][0]
    assert tables(url) >= APP_TABLES
    migrations.downgrade(url, "base")
    assert tables(url) - {"alembic_version"} == set(), "downgrade to base left tables behind"
    assert audit_triggers(url) == set()
    migrations.upgrade(url, "head")
    assert current_revision(url) == head
    assert tables(url) >= APP_TABLES


def test_schema_after_upgrade_matches_the_tables_module(empty_database_url: str) -> None:
    """Models and migrations agree: alembic's autogenerate finds nothing left to migrate."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    migrations.upgrade(empty_database_url, "head")

    def diff(conn: Connection) -> list[Any]:
        # A month's partition of the audit log is made by its job, not by the tables module.
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_name": skip_audit_partitions}
        )
        return list(compare_metadata(context, metadata))

    assert inspect(empty_database_url, diff) == []


def test_audit_triggers_exist_after_upgrade_and_survive_a_round_trip(empty_database_url: str) -> None:
    url = empty_database_url
    migrations.upgrade(url, "head")
    first = audit_triggers(url)
    assert first, "no append-only triggers on audit_events"
    migrations.downgrade(url, "base")
    migrations.upgrade(url, "head")
    assert audit_triggers(url) == first
    assert_audit_rows_are_immutable(url)


def assert_audit_rows_are_immutable(url: str) -> None:
    row = {
        "id": 1,
        "occurred_at": datetime.now(UTC),
        "actor_kind": "system",
        "action": "test.stairway",
        "details": {},
    }

    async def run() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(audit_events.insert().values(**row))
            for statement in (
                audit_events.update().values(action="tampered"),
                audit_events.delete(),
            ):
                with pytest.raises(sa.exc.DBAPIError, match="append-only"):
                    async with engine.begin() as conn:
                        await conn.execute(statement)
            async with engine.connect() as conn:
                assert (await conn.execute(sa.select(audit_events.c.action))).scalar_one() == "test.stairway"
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_0004_makes_administrators_and_the_administrator_role_one_thing(empty_database_url: str) -> None:
    """Rows from before the rule: an administrator without the role gets it, a member holding the
    role becomes an administrator, and everyone else is left as they were."""
    from adapters.storage.tables import member_roles, memberships, organisations, users
    from domain.permissions import ADMINISTRATOR_ROLE_ID, SYSTEM_ROLE_IDS, SystemRole

    url = empty_database_url
    migrations.upgrade(url, "0003")
    now = datetime.now(UTC)
    org = uuid.uuid4()
    people = {name: uuid.uuid4() for name in ("admin_without_role", "member_with_role", "trader")}
    links = [
        (people["member_with_role"], ADMINISTRATOR_ROLE_ID),
        (people["trader"], SYSTEM_ROLE_IDS[SystemRole.TRADER]),
    ]

    async def seed() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    organisations.insert().values(id=org, name="Legacy", status="active", created_at=now)
                )
                for name, user_id in people.items():
                    await conn.execute(
                        users.insert().values(
                            id=user_id,
                            email=f"{name}@example.com",
                            display_name=name,
                            password_hash="x",
                            pepper_version="p1",
                            platform_role="user",
                            status="active",
                            created_at=now,
                        )
                    )
                    role = "administrator" if name == "admin_without_role" else "member"
                    await conn.execute(
                        memberships.insert().values(org_id=org, user_id=user_id, role=role, created_at=now)
                    )
                for user_id, role_id in links:
                    await conn.execute(
                        member_roles.insert().values(
                            org_id=org, user_id=user_id, role_id=role_id, created_at=now
                        )
                    )
        finally:
            await engine.dispose()

    async def state() -> dict[uuid.UUID, tuple[str, set[uuid.UUID]]]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                roles = {row.user_id: row.role for row in await conn.execute(sa.select(memberships))}
                held: dict[uuid.UUID, set[uuid.UUID]] = {user_id: set() for user_id in roles}
                for row in await conn.execute(sa.select(member_roles)):
                    held[row.user_id].add(row.role_id)
                return {user_id: (roles[user_id], held[user_id]) for user_id in roles}
        finally:
            await engine.dispose()

    asyncio.run(seed())
    migrations.upgrade(url, "0004")
    assert asyncio.run(state()) == {
        people["admin_without_role"]: ("administrator", {ADMINISTRATOR_ROLE_ID}),
        people["member_with_role"]: ("administrator", {ADMINISTRATOR_ROLE_ID}),
        people["trader"]: ("member", {SYSTEM_ROLE_IDS[SystemRole.TRADER]}),
    }


def test_0014_keeps_every_existing_audit_entry_verifiable_and_the_chain_goes_on(
    empty_database_url: str,
) -> None:
    """Entries chained under the single-lock design (prev_hash/hash on the row, gap-free ids),
    one of them from a year ago: after 0014 they verify unchanged from their old hashes, in
    their months' partitions, and new entries continue the same chain; a downgrade puts the
    hashes back on the rows."""
    from adapters.storage.audit_log import SqlAuditLog
    from adapters.storage.audit_sealer import SqlAuditSealer
    from adapters.storage.audit_verification import VerifyResult, verify_chain
    from domain.audit import GENESIS_HASH, ActorKind, AuditEvent, chain_hash, normalise_time

    url = empty_database_url
    migrations.upgrade(url, "0011")
    now = normalise_time(datetime.now(UTC))
    times = [now - timedelta(days=400), now - timedelta(days=1), now]
    old_rows = []
    prev = GENESIS_HASH
    for seq, at in enumerate(times, start=1):
        event = AuditEvent(action=f"legacy.{seq}", actor_kind=ActorKind.SYSTEM, details={"n": seq})
        digest = chain_hash(prev, seq, at, event)
        old_rows.append(
            {
                "id": seq,
                "at": at,
                "action": event.action,
                "details": f'{{"n": {seq}}}',
                "prev": prev,
                "hash": digest,
            }
        )
        prev = digest

    async def seed() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                for row in old_rows:
                    at = row["at"] if conn.dialect.name == "postgresql" else row["at"].replace(tzinfo=None)
                    await conn.execute(
                        sa.text(
                            "INSERT INTO audit_events (id, occurred_at, actor_kind, action, details, "
                            "prev_hash, hash) VALUES (:id, :at, 'system', :action, :details, :prev, :hash)"
                        ),
                        {**row, "at": at},
                    )
                await conn.execute(
                    sa.text("UPDATE audit_chain_head SET last_id = 3, last_hash = :hash WHERE id = 1"),
                    {"hash": prev},
                )
        finally:
            await engine.dispose()

    async def after_upgrade() -> None:
        engine = create_engine(url)
        try:
            assert await verify_chain(engine) == VerifyResult(ok=True, records_checked=3)
            async with engine.begin() as conn:
                added = await SqlAuditLog(conn).append(AuditEvent(action="after.0014"))
            assert added.id == 4  # the sequence starts after the old ids
            await SqlAuditSealer(engine, wait_seconds=2.0).seal()
            assert await verify_chain(engine) == VerifyResult(ok=True, records_checked=4)
        finally:
            await engine.dispose()

    async def after_downgrade() -> list[tuple[int, str, str]]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(sa.text("SELECT id, prev_hash, hash FROM audit_events ORDER BY id"))
                return [(int(r.id), str(r.prev_hash), str(r.hash)) for r in rows]
        finally:
            await engine.dispose()

    asyncio.run(seed())
    migrations.upgrade(url, "0014")
    asyncio.run(after_upgrade())
    migrations.downgrade(url, "0011")
    restored = asyncio.run(after_downgrade())
    assert restored[:3] == [(r["id"], r["prev"], r["hash"]) for r in old_rows]
    assert [r[0] for r in restored] == [1, 2, 3, 4] and restored[3][1] == old_rows[2]["hash"]
