"""The egress ledger in SQL, and the gateway's binding lookup read from it.

PostgreSQL picks an available address with `FOR UPDATE SKIP LOCKED`; SQLite (development) has
one writer at a time anyway (its transactions begin IMMEDIATE), so the same statement without
the clause is as exclusive there."""

import ipaddress
import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import and_, delete, exists, insert, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.storage.tables import egress_addresses, egress_transitions, egress_waiting, users
from application.ports.egress_provider import ProviderAddress
from application.ports.egress_repository import (
    EgressHistoryEntry,
    EgressPending,
    EgressSearch,
    EgressUserAlreadyBound,
)
from domain.egress import EgressActor, EgressAddress, EgressState, EgressTransition
from domain.users import UserStatus

_A = egress_addresses.c
_W = egress_waiting.c
_LIVE_INDEX = "uq_egress_addresses_live_user"


def _to_address(row: Any) -> EgressAddress:
    return EgressAddress(
        address=row.address,
        provider_ref=row.provider_ref,
        state=EgressState(row.state),
        since=row.since,
        user_id=row.user_id,
        grace_until=row.grace_until,
        cool_until=row.cool_until,
    )


def _to_pending(row: Any) -> EgressPending:
    return EgressPending(
        user_id=row.user_id,
        since=row.since,
        attempt_id=row.attempt_id,
        attempts=row.attempts,
        last_error=row.last_error,
        notified_at=row.notified_at,
    )


def _same_holder(user_id: UUID | None) -> Any:
    return _A.user_id.is_(None) if user_id is None else _A.user_id == user_id


def _record(
    address: str,
    from_state: EgressState | None,
    to_state: EgressState,
    user_id: UUID | None,
    actor: EgressActor,
    reason: str,
    at: datetime,
) -> Any:
    return insert(egress_transitions).values(
        id=uuid.uuid4(),
        address=address,
        from_state=None if from_state is None else str(from_state),
        to_state=str(to_state),
        user_id=user_id,
        actor=str(actor)[:60],
        reason=reason[:200],
        at=at,
    )


class SqlEgressRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection
        self._postgres = connection.dialect.name == "postgresql"

    async def get(self, address: str) -> EgressAddress | None:
        row = (await self.connection.execute(select(egress_addresses).where(_A.address == address))).first()
        return None if row is None else _to_address(row)

    async def lock(self, address: str) -> EgressAddress | None:
        query = select(egress_addresses).where(_A.address == address).with_for_update()
        row = (await self.connection.execute(query)).first()
        return None if row is None else _to_address(row)

    async def lock_holder(self, user_id: UUID) -> tuple[UserStatus, str] | None:
        query = select(users.c.status, users.c.plan).where(users.c.id == user_id).with_for_update()
        row = (await self.connection.execute(query)).first()
        return None if row is None else (UserStatus(row.status), row.plan)

    async def live_for_user(self, user_id: UUID) -> EgressAddress | None:
        query = select(egress_addresses).where(
            (_A.user_id == user_id) & (_A.state == str(EgressState.ALLOCATED))
        )
        row = (await self.connection.execute(query)).first()
        return None if row is None else _to_address(row)

    async def held_by(self, user_id: UUID) -> list[EgressAddress]:
        query = select(egress_addresses).where(_A.user_id == user_id).order_by(_A.since)
        return [_to_address(row) for row in await self.connection.execute(query)]

    async def pick_available(self, among: Collection[str] | None = None) -> EgressAddress | None:
        # The longest-idle address first; rows other allocations hold are skipped, not awaited.
        query = (
            select(egress_addresses)
            .where(_A.state == str(EgressState.AVAILABLE), true() if among is None else _A.address.in_(among))
            .order_by(_A.since, _A.address)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        row = (await self.connection.execute(query)).first()
        return None if row is None else _to_address(row)

    async def apply(self, transition: EgressTransition) -> bool:
        before, after = transition.before, transition.after
        statement = (
            update(egress_addresses)
            .where(
                (_A.address == before.address)
                & (_A.state == str(before.state))
                & _same_holder(before.user_id)
            )
            .values(
                state=str(after.state),
                provider_ref=after.provider_ref,
                user_id=after.user_id,
                since=after.since,
                grace_until=after.grace_until,
                cool_until=after.cool_until,
            )
        )
        try:
            result = await self.connection.execute(statement)
        except IntegrityError as error:
            if _LIVE_INDEX in str(error.orig) or "egress_addresses.user_id" in str(error.orig):
                raise EgressUserAlreadyBound(str(after.user_id)) from None
            raise
        if result.rowcount != 1:
            return False
        holder = after.user_id if after.user_id is not None else before.user_id
        await self.connection.execute(
            _record(
                after.address,
                before.state,
                after.state,
                holder,
                transition.actor,
                transition.reason,
                transition.at,
            )
        )
        return True

    async def set_grace(
        self,
        address: EgressAddress,
        grace_until: datetime | None,
        now: datetime,
        actor: EgressActor,
        reason: str,
    ) -> bool:
        result = await self.connection.execute(
            update(egress_addresses)
            .where(
                (_A.address == address.address)
                & (_A.state == str(EgressState.ALLOCATED))
                & _same_holder(address.user_id)
            )
            .values(grace_until=grace_until)
        )
        if result.rowcount != 1:
            return False
        await self.connection.execute(
            _record(
                address.address,
                EgressState.ALLOCATED,
                EgressState.ALLOCATED,
                address.user_id,
                actor,
                reason,
                now,
            )
        )
        return True

    async def add(self, found: ProviderAddress, now: datetime, actor: EgressActor, reason: str) -> bool:
        values = {
            "address": found.address,
            "provider_ref": found.provider_ref,
            "state": str(EgressState.AVAILABLE),
            "user_id": None,
            "since": now,
        }
        dialect_insert = pg_insert if self._postgres else sqlite_insert
        statement = dialect_insert(egress_addresses).values(**values).on_conflict_do_nothing()
        result = await self.connection.execute(statement)
        if result.rowcount != 1:
            return False
        await self.connection.execute(
            _record(found.address, None, EgressState.AVAILABLE, None, actor, reason, now)
        )
        return True

    async def search(self, criteria: EgressSearch) -> list[EgressAddress]:
        query = select(egress_addresses).order_by(_A.address).limit(criteria.limit)
        if criteria.state is not None:
            query = query.where(_A.state == str(criteria.state))
        if criteria.user_id is not None:
            query = query.where(_A.user_id == criteria.user_id)
        if criteria.after is not None:
            query = query.where(_A.address > criteria.after)
        return [_to_address(row) for row in await self.connection.execute(query)]

    async def every(self) -> list[EgressAddress]:
        query = select(egress_addresses).order_by(_A.address)
        return [_to_address(row) for row in await self.connection.execute(query)]

    async def in_states(self, states: tuple[EgressState, ...]) -> list[EgressAddress]:
        query = select(egress_addresses).where(_A.state.in_([str(s) for s in states])).order_by(_A.since)
        return [_to_address(row) for row in await self.connection.execute(query)]

    async def history(self, address: str, limit: int) -> list[EgressHistoryEntry]:
        t = egress_transitions.c
        query = select(egress_transitions).where(t.address == address).order_by(t.at.desc()).limit(limit)
        return [
            EgressHistoryEntry(
                address=row.address,
                from_state=None if row.from_state is None else EgressState(row.from_state),
                to_state=EgressState(row.to_state),
                user_id=row.user_id,
                actor=row.actor,
                reason=row.reason,
                at=row.at,
            )
            for row in await self.connection.execute(query)
        ]

    async def paying_without_address(self, paying_plans: frozenset[str], limit: int) -> list[UUID]:
        if not paying_plans:
            return []
        live = exists().where((_A.user_id == users.c.id) & (_A.state == str(EgressState.ALLOCATED)))
        query = (
            select(users.c.id)
            .where(
                and_(
                    users.c.plan.in_(sorted(paying_plans)),
                    users.c.status == str(UserStatus.ACTIVE),
                    ~live,
                )
            )
            .order_by(users.c.created_at, users.c.id)
            .limit(limit)
        )
        return [row.id for row in await self.connection.execute(query)]

    async def wait(self, user_id: UUID, now: datetime, attempt_id: UUID) -> EgressPending:
        dialect_insert = pg_insert if self._postgres else sqlite_insert
        await self.connection.execute(
            dialect_insert(egress_waiting)
            .values(user_id=user_id, since=now, attempt_id=attempt_id, attempts=0, last_error="")
            .on_conflict_do_nothing()
        )
        row = (await self.connection.execute(select(egress_waiting).where(_W.user_id == user_id))).one()
        return _to_pending(row)

    async def waiting(self) -> list[EgressPending]:
        query = select(egress_waiting).order_by(_W.since)
        return [_to_pending(row) for row in await self.connection.execute(query)]

    async def failed_attempt(self, user_id: UUID, error: str) -> None:
        await self.connection.execute(
            update(egress_waiting)
            .where(_W.user_id == user_id)
            .values(attempts=_W.attempts + 1, last_error=error[:200])
        )

    async def claim_unnotified(self, now: datetime) -> list[EgressPending]:
        # Rows another caller is claiming are skipped, not waited for (nor deadlocked on).
        unclaimed = (
            select(_W.user_id)
            .where(_W.notified_at.is_(None))
            .order_by(_W.user_id)
            .with_for_update(skip_locked=True)
        )
        claimed = await self.connection.execute(
            update(egress_waiting)
            .where(_W.user_id.in_(unclaimed.scalar_subquery()) & _W.notified_at.is_(None))
            .values(notified_at=now)
            .returning(*egress_waiting.c)
        )
        return sorted((_to_pending(row) for row in claimed), key=lambda w: w.since)

    async def unclaim(self, user_ids: list[UUID]) -> None:
        if user_ids:
            await self.connection.execute(
                update(egress_waiting).where(_W.user_id.in_(user_ids)).values(notified_at=None)
            )

    async def stop_waiting(self, user_id: UUID) -> None:
        await self.connection.execute(delete(egress_waiting).where(_W.user_id == user_id))


# Only while the account is active: a paused or closed holder's logins stop at once, before the
# job gets to their teardown (a pause keeps the address, for the unpause).
_LIVE_ADDRESS = (
    select(_A.address)
    .join(users, users.c.id == _A.user_id)
    .where(_A.state == str(EgressState.ALLOCATED), users.c.status == str(UserStatus.ACTIVE))
)


class SqlEgressBindingLookup:
    """`EgressBindingLookup` for the gateway's helper: one indexed read per admission, committed
    data only, so a teardown's commit is seen by the very next admission."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def live_address(self, user_id: UUID) -> str | None:
        async with self.engine.connect() as connection:
            found = await connection.execute(_LIVE_ADDRESS.where(_A.user_id == user_id))
            return found.scalar_one_or_none()

    async def held_addresses(self) -> list[str]:
        """Every address the ledger holds that is not given back (a growing provider's pool,
        which squid.conf names); read with the egress host's narrow role."""
        async with self.engine.connect() as connection:
            found = await connection.execute(select(_A.address).where(_A.state != str(EgressState.RELEASED)))
            return sorted(found.scalars(), key=ipaddress.IPv4Address)
