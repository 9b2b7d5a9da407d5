"""Broker connections and pending authorisations in SQL. Every org-scoped statement declares its
org first, so PostgreSQL's row-level security backs the `org_id` filters."""

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.storage.row_security import RowSecurity
from adapters.storage.tables import broker_connections, broker_oauth_states, integration_secrets
from application.ports.broker_connection_repository import SealedRow
from domain.brokers import (
    BrokerConnection,
    ConnectedAccount,
    ConnectionKind,
    ConnectionStatus,
    CtraderScope,
    OAuthState,
    SealedCredential,
)

_C = broker_connections.c


def _accounts_json(accounts: tuple[ConnectedAccount, ...]) -> list[dict[str, Any]]:
    return [
        {
            "ctid_trader_account_id": a.ctid_trader_account_id,
            "is_live": a.is_live,
            "trader_login": a.trader_login,
            "broker": a.broker,
        }
        for a in accounts
    ]


def to_connection(row: Any) -> BrokerConnection:
    sealed = None
    if row.sealed_tokens is not None and row.sealed_key_id is not None:
        sealed = SealedCredential(key_id=row.sealed_key_id, ciphertext=bytes(row.sealed_tokens))
    return BrokerConnection(
        id=row.id,
        org_id=row.org_id,
        kind=ConnectionKind(row.kind),
        label=row.label,
        status=ConnectionStatus(row.status),
        scope=CtraderScope(row.scope),
        accounts=tuple(
            ConnectedAccount(
                ctid_trader_account_id=int(a["ctid_trader_account_id"]),
                is_live=bool(a["is_live"]),
                trader_login=a.get("trader_login"),
                broker=str(a.get("broker", "")),
            )
            for a in row.accounts
        ),
        created_by=row.created_by,
        created_at=row.created_at,
        access_expires_at=row.access_expires_at,
        last_refreshed_at=row.last_refreshed_at,
        generation=row.generation,
        refresh_claimed_at=row.refresh_claimed_at,
        sealed=sealed,
    )


class SqlBrokerConnectionRepository:
    def __init__(self, connection: AsyncConnection, rls: RowSecurity) -> None:
        self.connection = connection
        self.rls = rls

    def _mine(self, org_id: UUID, connection_id: UUID) -> Any:
        return (_C.org_id == org_id) & (_C.id == connection_id)

    async def add(self, connection: BrokerConnection) -> None:
        await self.rls.org(connection.org_id)
        sealed = connection.sealed
        await self.connection.execute(
            insert(broker_connections).values(
                id=connection.id,
                org_id=connection.org_id,
                kind=str(connection.kind),
                label=connection.label,
                status=str(connection.status),
                scope=str(connection.scope),
                accounts=_accounts_json(connection.accounts),
                created_by=connection.created_by,
                created_at=connection.created_at,
                access_expires_at=connection.access_expires_at,
                last_refreshed_at=connection.last_refreshed_at,
                generation=connection.generation,
                sealed_key_id=sealed.key_id if sealed else None,
                sealed_tokens=sealed.ciphertext if sealed else None,
            )
        )

    async def get(self, org_id: UUID, connection_id: UUID) -> BrokerConnection | None:
        await self.rls.org(org_id)
        row = (
            await self.connection.execute(select(broker_connections).where(self._mine(org_id, connection_id)))
        ).first()
        return None if row is None else to_connection(row)

    async def in_org(self, org_id: UUID) -> list[BrokerConnection]:
        await self.rls.org(org_id)
        query = select(broker_connections).where(_C.org_id == org_id).order_by(_C.created_at, _C.id)
        return [to_connection(row) for row in await self.connection.execute(query)]

    async def _update(self, where: Any, **values: Any) -> bool:
        result = await self.connection.execute(update(broker_connections).where(where).values(**values))
        return bool(result.rowcount == 1)

    async def replace_tokens(
        self,
        org_id: UUID,
        connection_id: UUID,
        sealed: SealedCredential,
        *,
        scope: CtraderScope,
        accounts: tuple[ConnectedAccount, ...],
        access_expires_at: datetime,
        now: datetime,
    ) -> bool:
        await self.rls.org(org_id)
        return await self._update(
            self._mine(org_id, connection_id) & (_C.status != str(ConnectionStatus.REVOKED)),
            sealed_key_id=sealed.key_id,
            sealed_tokens=sealed.ciphertext,
            scope=str(scope),
            accounts=_accounts_json(accounts),
            access_expires_at=access_expires_at,
            last_refreshed_at=now,
            updated_at=now,
            status=str(ConnectionStatus.ACTIVE),
            refresh_claimed_at=None,
            generation=_C.generation + 1,
        )

    async def claim_refresh(self, org_id: UUID, connection_id: UUID, generation: int, now: datetime) -> bool:
        await self.rls.org(org_id)
        return await self._update(
            self._mine(org_id, connection_id)
            & (_C.generation == generation)
            & (_C.status == str(ConnectionStatus.ACTIVE))
            & _C.refresh_claimed_at.is_(None),
            refresh_claimed_at=now,
        )

    async def finish_refresh(
        self,
        org_id: UUID,
        connection_id: UUID,
        generation: int,
        sealed: SealedCredential,
        access_expires_at: datetime,
        now: datetime,
    ) -> bool:
        await self.rls.org(org_id)
        return await self._update(
            self._mine(org_id, connection_id)
            & (_C.generation == generation)
            & (_C.status == str(ConnectionStatus.ACTIVE))
            & _C.refresh_claimed_at.is_not(None),
            sealed_key_id=sealed.key_id,
            sealed_tokens=sealed.ciphertext,
            access_expires_at=access_expires_at,
            last_refreshed_at=now,
            updated_at=now,
            refresh_claimed_at=None,
            generation=generation + 1,
        )

    async def release_refresh(self, org_id: UUID, connection_id: UUID, generation: int) -> None:
        await self.rls.org(org_id)
        await self._update(
            self._mine(org_id, connection_id) & (_C.generation == generation), refresh_claimed_at=None
        )

    async def mark_needs_reauth(self, org_id: UUID, connection_id: UUID, now: datetime) -> bool:
        await self.rls.org(org_id)
        return await self._update(
            self._mine(org_id, connection_id) & (_C.status == str(ConnectionStatus.ACTIVE)),
            status=str(ConnectionStatus.NEEDS_REAUTH),
            refresh_claimed_at=None,
            updated_at=now,
        )

    async def rename(self, org_id: UUID, connection_id: UUID, label: str, now: datetime) -> bool:
        await self.rls.org(org_id)
        return await self._update(self._mine(org_id, connection_id), label=label, updated_at=now)

    async def revoke(self, org_id: UUID, connection_id: UUID, now: datetime) -> bool:
        await self.rls.org(org_id)
        live = self._mine(org_id, connection_id) & (_C.status != str(ConnectionStatus.REVOKED))
        # First the ciphertext goes, then the status: the row never says revoked while holding it.
        if not await self._update(live, sealed_tokens=None, sealed_key_id=None, refresh_claimed_at=None):
            return False
        return await self._update(live, status=str(ConnectionStatus.REVOKED), updated_at=now)

    async def reseal(
        self, org_id: UUID, connection_id: UUID, generation: int, sealed: SealedCredential
    ) -> bool:
        await self.rls.org(org_id)
        return await self._update(
            self._mine(org_id, connection_id)
            & (_C.generation == generation)
            & _C.sealed_tokens.is_not(None)
            & _C.refresh_claimed_at.is_(None),  # a refresh in flight wins; rotation comes back later
            sealed_key_id=sealed.key_id,
            sealed_tokens=sealed.ciphertext,
            generation=generation + 1,
        )

    async def add_state(self, state: OAuthState) -> None:
        await self.connection.execute(
            insert(broker_oauth_states).values(
                state_hash=state.state_hash,
                user_id=state.user_id,
                org_id=state.org_id,
                session_id=state.session_id,
                scope=str(state.scope),
                connection_id=state.connection_id,
                browser_hash=state.browser_hash,
                created_at=state.created_at,
                expires_at=state.expires_at,
            )
        )

    async def consume_state(self, state_hash: str, now: datetime) -> OAuthState | None:
        s = broker_oauth_states.c
        claimed = await self.connection.execute(
            update(broker_oauth_states)
            .where((s.state_hash == state_hash) & s.used_at.is_(None))
            .values(used_at=now)
        )
        if claimed.rowcount != 1:
            return None
        row = (
            await self.connection.execute(select(broker_oauth_states).where(s.state_hash == state_hash))
        ).one()
        return OAuthState(
            state_hash=row.state_hash,
            user_id=row.user_id,
            org_id=row.org_id,
            session_id=row.session_id,
            scope=CtraderScope(row.scope),
            connection_id=row.connection_id,
            browser_hash=row.browser_hash,
            created_at=row.created_at,
            expires_at=row.expires_at,
        )

    async def sealed_directory(self) -> list[SealedRow]:
        if self.connection.dialect.name == "postgresql":
            rows = await self.connection.execute(
                text(
                    "SELECT table_name, id, org_id, key_id, access_expires_at FROM bulwark_sealed_directory()"
                )
            )
            return [
                SealedRow(r.table_name, r.id, r.org_id, r.key_id, _utc(r.access_expires_at)) for r in rows
            ]
        found = [
            SealedRow("broker_connections", r.id, r.org_id, r.sealed_key_id, r.access_expires_at)
            for r in await self.connection.execute(
                select(_C.id, _C.org_id, _C.sealed_key_id, _C.access_expires_at).where(
                    _C.sealed_tokens.is_not(None)
                )
            )
        ]
        i = integration_secrets.c
        found += [
            SealedRow("integration_secrets", r.id, r.org_id, r.sealed_key_id, None)
            for r in await self.connection.execute(select(i.id, i.org_id, i.sealed_key_id))
        ]
        return found

    async def org_of(self, table: str, row_id: UUID) -> UUID | None:
        if self.connection.dialect.name == "postgresql":
            row = (
                await self.connection.execute(
                    text("SELECT bulwark_sealed_org(:t, :id) AS org_id"), {"t": table, "id": row_id}
                )
            ).first()
            return None if row is None or row.org_id is None else UUID(str(row.org_id))
        source = broker_connections if table == "broker_connections" else integration_secrets
        query = select(source.c.org_id).where(source.c.id == row_id)
        if source is broker_connections:
            query = query.where(_C.sealed_tokens.is_not(None))
        row = (await self.connection.execute(query)).first()
        return None if row is None else UUID(str(row.org_id))


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
