"""The vault's hot read. On PostgreSQL one statement through asyncpg (`bulwark_vault_read`, which
declares the connection's org for row-level security and reads the connection, its org, its
owner, the owner's membership and the client, under the caller's policies); elsewhere the same
through the repositories."""

import asyncio
import json
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import asyncpg
from sqlalchemy import bindparam, column, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.broker_connection_repository import to_connection
from adapters.storage.driver_statement import DriverStatement
from adapters.storage.outage import database_unavailable, is_outage
from adapters.storage.unit_of_work import SqlUnitOfWork
from application.ports.vault_reader import AccessView

_COLUMNS = (
    *("id", "org_id", "kind", "label", "status", "scope", "accounts", "created_by", "created_at"),
    *("access_expires_at", "last_refreshed_at", "generation", "refresh_claimed_at", "sealed_key_id"),
    *("sealed_tokens", "org_status", "owner_status", "owner_is_member", "client_known", "client_disabled"),
)
_READ = DriverStatement(
    select(*(column(name) for name in _COLUMNS)).select_from(
        func.bulwark_vault_read(bindparam("wanted"), bindparam("client")).table_valued(*_COLUMNS)
    )
)


class SqlVaultReader:
    """On PostgreSQL the read goes through an asyncpg pool of its own: the statement is alone and
    autocommitted, and SQLAlchemy's pool checkout and greenlet hops cost more than it does."""

    def __init__(self, engine: AsyncEngine, *, pool_size: int = 10) -> None:
        self.engine = engine
        self._direct = engine.dialect.name == "postgresql" and engine.dialect.driver == "asyncpg"
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _driver_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    url = self.engine.url.set(drivername="postgresql")
                    self._pool = await asyncpg.create_pool(
                        url.render_as_string(hide_password=False),
                        min_size=1,
                        max_size=self._pool_size,
                        # Nothing to reset: the one statement autocommits and its org declaration
                        # is local to that transaction. asyncpg's default reset costs a round trip.
                        reset=_nothing_to_reset,
                    )
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def access_view(self, connection_id: UUID, client_id: UUID) -> AccessView | None:
        if self._direct:
            arguments = _READ.arguments({"wanted": connection_id, "client": client_id})
            try:
                pool = await self._driver_pool()
                row = await pool.fetchrow(_READ.sql, *arguments)
            except Exception as error:
                # A restarting database is an outage (503 + Retry-After), not a 500; asyncpg's
                # pool replaces the lost connections on its own.
                if is_outage(error):
                    raise database_unavailable() from error
                raise
            if row is None or row["sealed_tokens"] is None:
                return None
            return _view(row)
        async with SqlUnitOfWork(self.engine) as uow:
            org_id = await uow.broker_connections.org_of("broker_connections", connection_id)
            connection = await uow.broker_connections.get(org_id, connection_id) if org_id else None
            if connection is None or connection.sealed is None:
                return None
            org = await uow.orgs.get(connection.org_id)
            owner = await uow.users.get(connection.created_by)
            member = await uow.authz.membership(connection.org_id, connection.created_by)
            client = await uow.service_clients.get(client_id)
        return AccessView(
            connection=connection,
            org_disabled=org is None or org.is_disabled,
            owner_suspended=owner is None or owner.is_suspended,
            owner_is_member=member is not None,
            client_usable=client is not None and not client.is_disabled,
        )


async def _nothing_to_reset(_: asyncpg.Connection) -> None:
    return None


def _view(row: Any) -> AccessView:
    record = dict(row)
    if isinstance(record["accounts"], str):  # asyncpg hands json over as text
        record["accounts"] = json.loads(record["accounts"])
    connection = to_connection(SimpleNamespace(**record))
    return AccessView(
        connection=connection,
        org_disabled=record["org_status"] != "active",
        owner_suspended=record["owner_status"] != "active",
        owner_is_member=bool(record["owner_is_member"]),
        client_usable=bool(record["client_known"]) and not record["client_disabled"],
    )
