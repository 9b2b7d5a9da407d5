"""MT5 bridges in SQL. Every statement declares its org first, so PostgreSQL's row-level
security backs the `org_id` filters; a bridge request finds its org through
`bulwark_bridge_org` (ids only) before it reads anything."""

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.storage.row_security import RowSecurity
from adapters.storage.tables import bridges, memberships, organisations, users
from application.ports.bridge_repository import BridgeStanding, LastSeen
from domain.bridges import BoundAccount, Bridge, BridgeStatus

_B = bridges.c
_SEEN_MANY = text(
    "SELECT bulwark_bridges_seen(CAST(:ids AS uuid[]), CAST(:orgs AS uuid[]), "
    "CAST(:seen AS timestamptz[]), CAST(:ips AS text[]), CAST(:beats AS text[])) AS changed"
)


def to_bridge(row: Any) -> Bridge:
    account = None
    if row.account_login is not None:
        account = BoundAccount(int(row.account_login), row.account_server or "", row.account_company or "")
    return Bridge(
        id=row.id,
        org_id=row.org_id,
        name=row.name,
        created_by=row.created_by,
        created_at=row.created_at,
        key_hash=row.key_hash,
        key_prefix=row.key_prefix,
        status=BridgeStatus(row.status),
        broker_connection=row.broker_connection,
        previous_key_hash=row.previous_key_hash,
        previous_valid_until=row.previous_valid_until,
        account=account,
        terminal_build=row.terminal_build,
        ea_version=row.ea_version,
        last_seen_at=row.last_seen_at,
        last_ip=row.last_ip,
        version=int(row.version),
    )


class SqlBridgeRepository:
    def __init__(self, connection: AsyncConnection, rls: RowSecurity) -> None:
        self.connection = connection
        self.rls = rls

    def _mine(self, org_id: UUID, bridge_id: UUID) -> Any:
        return (_B.org_id == org_id) & (_B.id == bridge_id)

    async def add(self, bridge: Bridge) -> None:
        await self.rls.org(bridge.org_id)
        await self.connection.execute(
            insert(bridges).values(
                id=bridge.id,
                org_id=bridge.org_id,
                name=bridge.name,
                broker_connection=bridge.broker_connection,
                created_by=bridge.created_by,
                created_at=bridge.created_at,
                key_hash=bridge.key_hash,
                key_prefix=bridge.key_prefix,
                status=str(bridge.status),
                version=bridge.version,
            )
        )

    async def get(self, org_id: UUID, bridge_id: UUID) -> Bridge | None:
        await self.rls.org(org_id)
        row = (await self.connection.execute(select(bridges).where(self._mine(org_id, bridge_id)))).first()
        return None if row is None else to_bridge(row)

    async def in_org(self, org_id: UUID) -> list[Bridge]:
        await self.rls.org(org_id)
        query = select(bridges).where(_B.org_id == org_id).order_by(_B.created_at, _B.id)
        return [to_bridge(row) for row in await self.connection.execute(query)]

    async def _org_of(self, bridge_id: UUID) -> UUID | None:
        if self.connection.dialect.name == "postgresql":
            row = (
                await self.connection.execute(
                    text("SELECT bulwark_bridge_org(:id) AS org_id"), {"id": bridge_id}
                )
            ).first()
            return None if row is None or row.org_id is None else UUID(str(row.org_id))
        row = (await self.connection.execute(select(_B.org_id).where(_B.id == bridge_id))).first()
        return None if row is None else UUID(str(row.org_id))

    async def standing(self, bridge_id: UUID) -> BridgeStanding | None:
        org_id = await self._org_of(bridge_id)
        if org_id is None:
            return None
        await self.rls.org(org_id)
        m = memberships.c
        query = (
            select(
                bridges,
                organisations.c.status.label("org_status"),
                organisations.c.authz_version.label("org_version"),
                users.c.status.label("owner_status"),
                m.user_id.label("member_id"),
            )
            .join(organisations, organisations.c.id == _B.org_id)
            .outerjoin(users, users.c.id == _B.created_by)
            .outerjoin(memberships, (m.org_id == _B.org_id) & (m.user_id == _B.created_by))
            .where(self._mine(org_id, bridge_id))
        )
        row = (await self.connection.execute(query)).first()
        if row is None:
            return None
        return BridgeStanding(
            bridge=to_bridge(row),
            org_disabled=row.org_status != "active",
            owner_usable=row.owner_status == "active" and row.member_id is not None,
            org_version=int(row.org_version),
        )

    async def _change(
        self, org_id: UUID, bridge_id: UUID, only_from: tuple[BridgeStatus, ...] | None = None, **values: Any
    ) -> Bridge | None:
        await self.rls.org(org_id)
        allowed = (
            _B.status != str(BridgeStatus.REVOKED)
            if only_from is None
            else _B.status.in_([str(status) for status in only_from])
        )
        result = await self.connection.execute(
            update(bridges)
            .where(self._mine(org_id, bridge_id) & allowed)
            .values(version=_B.version + 1, **values)
            .returning(*bridges.c)
        )
        row = result.first()
        return None if row is None else to_bridge(row)

    async def rename(self, org_id: UUID, bridge_id: UUID, name: str, now: datetime) -> Bridge | None:
        return await self._change(org_id, bridge_id, name=name, updated_at=now)

    async def rotate_key(
        self, org_id: UUID, bridge_id: UUID, key_hash: str, prefix: str, previous_valid_until: datetime
    ) -> Bridge | None:
        return await self._change(
            org_id,
            bridge_id,
            previous_key_hash=_B.key_hash,
            previous_valid_until=previous_valid_until,
            key_hash=key_hash,
            key_prefix=prefix,
        )

    async def set_status(
        self,
        org_id: UUID,
        bridge_id: UUID,
        status: BridgeStatus,
        now: datetime,
        only_from: tuple[BridgeStatus, ...] | None = None,
    ) -> Bridge | None:
        values: dict[str, Any] = {"status": str(status), "updated_at": now}
        if status is BridgeStatus.REVOKED:
            values |= {"previous_key_hash": None, "previous_valid_until": None}
        return await self._change(org_id, bridge_id, only_from, **values)

    async def bind(
        self,
        org_id: UUID,
        bridge_id: UUID,
        account: BoundAccount,
        terminal_build: int,
        ea_version: str,
        now: datetime,
        ip: str,
    ) -> bool:
        await self.rls.org(org_id)
        result = await self.connection.execute(
            update(bridges)
            .where(
                self._mine(org_id, bridge_id)
                & _B.account_login.is_(None)
                & (_B.status == str(BridgeStatus.PENDING))
            )
            .values(
                account_login=account.login,
                account_server=account.server,
                account_company=account.company,
                terminal_build=terminal_build,
                ea_version=ea_version,
                status=str(BridgeStatus.ONLINE),
                last_seen_at=now,
                last_ip=ip,
                version=_B.version + 1,
            )
        )
        return bool(result.rowcount == 1)

    async def seen(
        self,
        org_id: UUID,
        bridge_id: UUID,
        now: datetime,
        ip: str,
        heartbeat: dict[str, object] | None = None,
    ) -> bool:
        await self.rls.org(org_id)
        values: dict[str, Any] = {"last_seen_at": now, "last_ip": ip, "status": str(BridgeStatus.ONLINE)}
        if heartbeat is not None:
            values["last_heartbeat"] = heartbeat
        live = _B.status.in_([str(BridgeStatus.ONLINE), str(BridgeStatus.OFFLINE)])
        result = await self.connection.execute(
            update(bridges).where(self._mine(org_id, bridge_id) & live).values(**values)
        )
        return bool(result.rowcount == 1)

    async def seen_many(self, marks: list[LastSeen]) -> int:
        if not marks:
            return 0
        if self.connection.dialect.name == "postgresql":
            row = (
                await self.connection.execute(
                    _SEEN_MANY,
                    {
                        "ids": [m.bridge_id for m in marks],
                        "orgs": [m.org_id for m in marks],
                        "seen": [m.at for m in marks],
                        "ips": [m.ip for m in marks],
                        "beats": [None if m.heartbeat is None else json.dumps(m.heartbeat) for m in marks],
                    },
                )
            ).first()
            return 0 if row is None else int(row.changed)
        live = _B.status.in_([str(BridgeStatus.ONLINE), str(BridgeStatus.OFFLINE)])
        newer = _B.last_seen_at.is_(None) | (_B.last_seen_at <= bindparam("at"))
        statement = (
            update(bridges)
            .where((_B.id == bindparam("bid")) & (_B.org_id == bindparam("oid")) & live & newer)
            .values(
                last_seen_at=bindparam("at"),
                last_ip=bindparam("ip"),
                status=str(BridgeStatus.ONLINE),
            )
        )
        changed = 0
        for mark in marks:  # SQLite: one writer, many cheap statements in one transaction
            values = {"bid": mark.bridge_id, "oid": mark.org_id, "at": mark.at, "ip": mark.ip}
            if mark.heartbeat is not None:
                result = await self.connection.execute(
                    statement.values(last_heartbeat=bindparam("beat")), {**values, "beat": mark.heartbeat}
                )
            else:
                result = await self.connection.execute(statement, values)
            changed += result.rowcount
        return changed

    async def forget_last_seen(self, org_id: UUID, bridge_id: UUID) -> None:
        await self.rls.org(org_id)
        await self.connection.execute(
            update(bridges).where(self._mine(org_id, bridge_id)).values(last_ip=None, last_heartbeat=None)
        )
