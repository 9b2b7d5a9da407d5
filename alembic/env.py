"""Alembic environment: async engines for both PostgreSQL (asyncpg) and SQLite (aiosqlite).

The URL is taken, in order, from the caller's config attribute `bulwark_url` (used by
`bulwark db upgrade` and the tests) or from the validated settings."""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from adapters.storage.audit_partitions import is_audit_partition
from adapters.storage.database import create_engine
from adapters.storage.tables import metadata

config = context.config


def _url() -> str:
    url = config.attributes.get("bulwark_url")
    if url:
        return str(url)
    from entrypoints.settings import load_settings

    return load_settings().effective_database_url


def _include_name(name: str | None, type_: str, _parents: object) -> bool:
    # The audit log's monthly partitions are made by its housekeeping job, not by the models.
    return not (type_ == "table" and is_audit_partition(name))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_name=_include_name,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(_url(), pool_size=1)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    asyncio.run(_run_async())


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `bulwark db upgrade`")
run_migrations_online()
