from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import String, bindparam, func, insert, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.storage.driver_statement import DriverStatement
from adapters.storage.org_repository import org_from_mapping
from adapters.storage.tables import organisations, refresh_tokens, sessions, totp_credentials, users
from adapters.storage.types import UTCDateTime
from adapters.storage.user_repository import user_from_mapping
from application.ports.unit_of_work import RefreshAttempt, RefreshContext
from domain.orgs import OrgStatus
from domain.refresh_rules import may_rotate
from domain.sessions import RETIRED_BY_SWITCH, RefreshToken, Session
from domain.users import UserStatus

_SESSION_FIELDS = (
    "user_id",
    "org_id",
    "created_at",
    "last_used_at",
    "auth_time",
    "idle_expires_at",
    "absolute_expires_at",
    "ip",
    "user_agent",
    "revoked_at",
    "revoked_reason",
)


def _to_session(row: Any) -> Session:
    return Session(id=row.id, **{name: getattr(row, name) for name in _SESSION_FIELDS})


def _live(now: datetime) -> Any:
    return (
        sessions.c.revoked_at.is_(None)
        & (sessions.c.idle_expires_at > now)
        & (sessions.c.absolute_expires_at > now)
    )


_SECOND_FACTOR = (
    select(totp_credentials.c.user_id)
    .where((totp_credentials.c.user_id == users.c.id) & totp_credentials.c.confirmed_at.is_not(None))
    .exists()
)

# Built once: constructing SQLAlchemy statements (a CTE above all) costs more CPU per call than
# PostgreSQL spends running them.
_CONTEXT_TABLES = (refresh_tokens, sessions, users, organisations)
_REFRESH_CONTEXT = (
    select(*_CONTEXT_TABLES, _SECOND_FACTOR.label("has_second_factor"))
    .join(sessions, sessions.c.id == refresh_tokens.c.session_id)
    .join(users, users.c.id == sessions.c.user_id)
    .join(organisations, organisations.c.id == sessions.c.org_id)
    .where(refresh_tokens.c.token_hash == bindparam("presented_hash"))
)
# The row holds each table's columns in turn, then the extras: read it by position, not by
# SQLAlchemy column objects (looking those up was a few per cent of a refresh's CPU).
_CONTEXT_NAMES = tuple(tuple(column.name for column in table.c) for table in _CONTEXT_TABLES)
_CONTEXT_WIDTH = sum(len(names) for names in _CONTEXT_NAMES)


def _by_table(values: Any) -> list[dict[str, Any]]:
    """The context's leading values (a row's, or the context CTE's columns) split by table and
    named by each table's own column names (the CTE labels the names the tables share)."""
    parts, at = [], 0
    for names in _CONTEXT_NAMES:
        parts.append(dict(zip(names, values[at : at + len(names)], strict=True)))
        at += len(names)
    return parts


def _context_parts(row: Any, extras: int) -> tuple[list[dict[str, Any]], tuple[Any, ...]]:
    if len(row) != _CONTEXT_WIDTH + extras:
        raise RuntimeError("refresh context row does not have the joined tables' columns")
    return _by_table(row), tuple(row[_CONTEXT_WIDTH:])


def _context_of(row: Any, extras: int) -> tuple[RefreshContext, tuple[Any, ...]]:
    (token_values, session_values, user_values, org_values), (has_second_factor, *rest) = _context_parts(
        row, extras
    )
    token = RefreshToken(
        token_hash=token_values["token_hash"],
        session_id=token_values["session_id"],
        created_at=token_values["created_at"],
        rotated_at=token_values["rotated_at"],
        successor_hash=token_values["successor_hash"],
    )
    session = Session(id=session_values["id"], **{n: session_values[n] for n in _SESSION_FIELDS})
    context = RefreshContext(
        token, session, user_from_mapping(user_values), org_from_mapping(org_values), bool(has_second_factor)
    )
    return context, tuple(rest)


def _rotatable(context: Any) -> Any:
    """domain.refresh_rules.may_rotate, in SQL, over the context's session, user and org."""
    _, session, user, org = _by_table(list(context.c))
    return (
        session["revoked_at"].is_(None)
        & (session["idle_expires_at"] > bindparam("at", type_=UTCDateTime))
        & (session["absolute_expires_at"] > bindparam("at", type_=UTCDateTime))
        # Constants in the SQL text: every bound parameter of the statement is one of the refresh's.
        & (user["status"] == literal_column(f"'{UserStatus.ACTIVE.value}'"))
        & (org["status"] != literal_column(f"'{OrgStatus.DISABLED.value}'"))
        & (context.c.has_second_factor | ~org["require_2fa"])
    )


def _refresh_statement() -> Any:
    """The whole of a refresh's storage work in one round trip. Every part of the statement sees
    the snapshot taken at its start, so the context it returns is the state before the rotation;
    the context is read once and both decides the claim and is returned.
    The claim is the conditional update: a concurrent claimer blocks on the row lock, then
    re-evaluates `rotated_at IS NULL` and claims nothing; a revocation committed before the
    statement began makes the session not rotatable."""
    context = _REFRESH_CONTEXT.cte("context")
    claimed = (
        update(refresh_tokens)
        .where(
            (refresh_tokens.c.token_hash == bindparam("presented_hash"))
            & refresh_tokens.c.rotated_at.is_(None)
            & (refresh_tokens.c.token_hash == context.c.token_hash)
            & _rotatable(context)
        )
        .values(rotated_at=bindparam("at", type_=UTCDateTime), successor_hash=bindparam("next_hash"))
        .returning(refresh_tokens.c.session_id)
        .cte("claimed")
    )
    stored = (
        insert(refresh_tokens)
        .from_select(
            ["token_hash", "session_id", "created_at"],
            select(
                bindparam("next_hash", type_=String),
                claimed.c.session_id,
                bindparam("at", type_=UTCDateTime),
            ),
        )
        .returning(refresh_tokens.c.session_id)
        .cte("stored")
    )
    touched = (
        update(sessions)
        .where(sessions.c.id.in_(select(stored.c.session_id)))
        .values(
            last_used_at=bindparam("at", type_=UTCDateTime),
            # Session.touched: never past the absolute limit.
            idle_expires_at=func.least(
                bindparam("idle_until", type_=UTCDateTime), sessions.c.absolute_expires_at
            ),
        )
        .returning(sessions.c.id)
        .cte("touched")
    )
    rotated = select(func.count()).select_from(touched).scalar_subquery()
    return select(context, rotated.label("rotated"))


_REFRESH_ON_POSTGRESQL = _refresh_statement()
# The same statement sent through asyncpg itself, alone on a pooled connection (`refresh_alone`).
_REFRESH_DIRECT = DriverStatement(_REFRESH_ON_POSTGRESQL)


def _refresh_params(token_hash: str, successor_hash: str, now: datetime, idle: timedelta) -> dict[str, Any]:
    return {"presented_hash": token_hash, "next_hash": successor_hash, "at": now, "idle_until": now + idle}


def _attempt_of(row: Any) -> RefreshAttempt | None:
    if row is None:
        return None
    context, (rotated,) = _context_of(row, extras=2)
    return RefreshAttempt(context, rotated=int(rotated) == 1)


async def refresh_alone(
    engine: AsyncEngine, token_hash: str, successor_hash: str, now: datetime, idle: timedelta
) -> RefreshAttempt | None:
    """`SqlSessionRepository.refresh` on PostgreSQL as a unit of work of its own: the one
    statement, committed by itself, through asyncpg on a raw pooled connection."""
    row = await _REFRESH_DIRECT.fetchrow(engine, _refresh_params(token_hash, successor_hash, now, idle))
    return _attempt_of(row)


# Built once; the parameters name the columns.
_INSERT_SESSION = insert(sessions)
_INSERT_REFRESH_TOKEN = insert(refresh_tokens)


def _start_statement() -> Any:
    """A session and its first refresh token in one statement (every login runs it): the token's
    row takes its session id from the session's insert."""
    started = (
        insert(sessions)
        .values({column: bindparam(f"s_{column.name}", type_=column.type) for column in sessions.c})
        .returning(sessions.c.id)
        .cte("started")
    )
    return insert(refresh_tokens).from_select(
        ["token_hash", "session_id", "created_at"],
        select(
            bindparam("token_hash", type_=String),
            started.c.id,
            bindparam("token_created_at", type_=UTCDateTime),
        ),
    )


_START_ON_POSTGRESQL = _start_statement()


class SqlSessionRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def add(self, session: Session) -> None:
        values = {name: getattr(session, name) for name in _SESSION_FIELDS}
        await self.connection.execute(_INSERT_SESSION, {"id": session.id, **values})

    async def start(self, session: Session, first_token: RefreshToken) -> None:
        if first_token.session_id != session.id:
            raise ValueError("the first refresh token belongs to another session")
        if self.connection.dialect.name != "postgresql":
            await self.add(session)
            await self.add_refresh_token(first_token)
            return
        values = {f"s_{name}": getattr(session, name) for name in ("id", *_SESSION_FIELDS)}
        await self.connection.execute(
            _START_ON_POSTGRESQL,
            {**values, "token_hash": first_token.token_hash, "token_created_at": first_token.created_at},
        )

    async def get(self, session_id: UUID) -> Session | None:
        row = (await self.connection.execute(select(sessions).where(sessions.c.id == session_id))).first()
        return _to_session(row) if row else None

    async def amend(self, session_id: UUID, **changes: Any) -> bool:
        """Changes only the named fields, and only while the session is not revoked: a revocation
        committed meanwhile is never written over (False then)."""
        unknown = set(changes) - {"last_used_at", "idle_expires_at", "auth_time", "org_id"}
        if unknown:
            raise ValueError(f"sessions cannot amend {sorted(unknown)}")
        result = await self.connection.execute(
            update(sessions)
            .where((sessions.c.id == session_id) & sessions.c.revoked_at.is_(None))
            .values(**changes)
        )
        return result.rowcount == 1

    async def revoked_since(self, since: datetime) -> list[tuple[UUID, datetime]]:
        """Sessions revoked after `since`, with their absolute expiry (revocation-store reloads)."""
        query = select(sessions.c.id, sessions.c.absolute_expires_at).where(sessions.c.revoked_at > since)
        return [(row.id, row.absolute_expires_at) for row in await self.connection.execute(query)]

    async def live_for_user(self, user_id: UUID, now: datetime) -> list[Session]:
        query = (
            select(sessions)
            .where((sessions.c.user_id == user_id) & _live(now))
            .order_by(sessions.c.last_used_at.desc())
        )
        return [_to_session(row) for row in await self.connection.execute(query)]

    async def last_started(self, user_id: UUID) -> datetime | None:
        query = select(func.max(sessions.c.created_at)).where(sessions.c.user_id == user_id)
        started: datetime | None = (await self.connection.execute(query)).scalar()
        return started

    async def revoke(self, session_id: UUID, now: datetime, reason: str) -> bool:
        result = await self.connection.execute(
            update(sessions)
            .where((sessions.c.id == session_id) & sessions.c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )
        return bool(result.rowcount)

    async def revoke_all_for_user(
        self, user_id: UUID, now: datetime, reason: str, except_session: UUID | None = None
    ) -> list[UUID]:
        condition = (sessions.c.user_id == user_id) & sessions.c.revoked_at.is_(None)
        if except_session is not None:
            condition &= sessions.c.id != except_session
        ids = [row.id for row in await self.connection.execute(select(sessions.c.id).where(condition))]
        if ids:
            await self.connection.execute(
                update(sessions)
                .where(sessions.c.id.in_(ids) & sessions.c.revoked_at.is_(None))
                .values(revoked_at=now, revoked_reason=reason)
            )
        return ids

    async def revoke_all_for_org(
        self, org_id: UUID, now: datetime, reason: str, user_id: UUID | None = None
    ) -> list[UUID]:
        condition = (sessions.c.org_id == org_id) & sessions.c.revoked_at.is_(None)
        if user_id is not None:
            condition &= sessions.c.user_id == user_id
        ids = [row.id for row in await self.connection.execute(select(sessions.c.id).where(condition))]
        if ids:
            await self.connection.execute(
                update(sessions)
                .where(sessions.c.id.in_(ids) & sessions.c.revoked_at.is_(None))
                .values(revoked_at=now, revoked_reason=reason)
            )
        return ids

    async def retire_refresh_tokens(self, session_id: UUID, now: datetime) -> None:
        """Every live refresh token of the session stops working (the chain restarts)."""
        await self.connection.execute(
            update(refresh_tokens)
            .where((refresh_tokens.c.session_id == session_id) & refresh_tokens.c.rotated_at.is_(None))
            .values(rotated_at=now, successor_hash=RETIRED_BY_SWITCH)
        )

    async def add_refresh_token(self, token: RefreshToken) -> None:
        await self.connection.execute(
            _INSERT_REFRESH_TOKEN,
            {
                "token_hash": token.token_hash,
                "session_id": token.session_id,
                "created_at": token.created_at,
                "rotated_at": token.rotated_at,
                "successor_hash": token.successor_hash,
            },
        )

    async def refresh(
        self, token_hash: str, successor_hash: str, now: datetime, idle: timedelta
    ) -> RefreshAttempt | None:
        """One statement on PostgreSQL (see also `refresh_alone`); on SQLite the read, then the
        rotation in the unit's transaction."""
        if self.connection.dialect.name == "postgresql":
            params = _refresh_params(token_hash, successor_hash, now, idle)
            return _attempt_of((await self.connection.execute(_REFRESH_ON_POSTGRESQL, params)).first())
        row = (await self.connection.execute(_REFRESH_CONTEXT, {"presented_hash": token_hash})).first()
        if row is None:
            return None
        context, _ = _context_of(row, extras=1)
        if context.token.rotated_at is not None or not may_rotate(
            context.session, context.user, context.org, context.has_second_factor, now
        ):
            return RefreshAttempt(context, rotated=False)
        touched = replace(context.session)
        touched.touched(now, idle)
        if not await self.claim_refresh_token(token_hash, now, successor_hash):
            return RefreshAttempt(context, rotated=False)
        await self.add_refresh_token(RefreshToken(successor_hash, touched.id, now))
        rotated = await self.amend(touched.id, last_used_at=now, idle_expires_at=touched.idle_expires_at)
        return RefreshAttempt(context, rotated=rotated)

    async def get_refresh_token(self, token_hash: str) -> RefreshToken | None:
        query = select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash)
        row = (await self.connection.execute(query)).first()
        if row is None:
            return None
        return RefreshToken(
            token_hash=row.token_hash,
            session_id=row.session_id,
            created_at=row.created_at,
            rotated_at=row.rotated_at,
            successor_hash=row.successor_hash,
        )

    async def claim_refresh_token(self, token_hash: str, now: datetime, successor_hash: str) -> bool:
        # The conditional update is the claim: on PostgreSQL a concurrent claimer blocks on the
        # row lock, then re-evaluates `rotated_at IS NULL` and updates nothing.
        result = await self.connection.execute(
            update(refresh_tokens)
            .where(
                (refresh_tokens.c.token_hash == token_hash)
                & refresh_tokens.c.rotated_at.is_(None)
                & refresh_tokens.c.session_id.in_(
                    select(sessions.c.id).where(sessions.c.revoked_at.is_(None))
                )
            )
            .values(rotated_at=now, successor_hash=successor_hash)
        )
        return result.rowcount == 1
