"""Capturing the SQL the service really sends, and asking PostgreSQL how it runs each statement.

Statements are caught where SQLAlchemy hands them to the driver (`before_cursor_execute`) and where
`DriverStatement` bypasses SQLAlchemy for the hottest ones, each with the row-level security
settings its transaction declared. Each is then replayed under `EXPLAIN (ANALYZE, FORMAT JSON)`
as the service's role with the same settings, in a transaction rolled back afterwards, so writes
are planned (and run) exactly as the service runs them and leave nothing behind."""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.driver_statement import DriverStatement

_RLS_SETTING = re.compile(r"set_config\('(bulwark\.[a-z_]+)'")
_PLANNED = ("select", "insert", "update", "delete", "with")


@dataclass(frozen=True)
class Captured:
    phase: str
    sql: str
    params: tuple[Any, ...]
    rls: tuple[tuple[str, str], ...]


@dataclass
class StatementLog:
    """What the service sent, by phase (`with log.phase("login"): ...`)."""

    statements: list[Captured] = field(default_factory=list)
    current: str = "setup"
    _rls: dict[int, dict[str, str]] = field(default_factory=dict)

    def phase(self, name: str) -> "_Phase":
        return _Phase(self, name)

    def record(self, connection_id: int, sql: str, params: Any) -> None:
        values = tuple(params[0] if params and isinstance(params[0], list | tuple) else params or ())
        setting = _RLS_SETTING.search(sql)
        if setting is not None:
            self._rls.setdefault(connection_id, {})[setting.group(1)] = str(values[0])
            return
        if sql.lstrip().lower().startswith(_PLANNED):
            rls = tuple(sorted(self._rls.get(connection_id, {}).items()))
            self.statements.append(Captured(self.current, sql, values, rls))

    def transaction_ended(self, connection_id: int) -> None:
        self._rls.pop(connection_id, None)  # set_config(..., true) lasts one transaction

    def of(self, *phases: str) -> Iterator[Captured]:
        seen: set[str] = set()
        for captured in self.statements:
            if captured.phase in phases and captured.sql not in seen:
                seen.add(captured.sql)
                yield captured


class _Phase:
    def __init__(self, log: StatementLog, name: str) -> None:
        self.log, self.name = log, name

    def __enter__(self) -> None:
        self.log.current = self.name

    def __exit__(self, *exc: object) -> None:
        self.log.current = "between"


def capture(engine: AsyncEngine, log: StatementLog, monkeypatch: Any) -> None:
    sync = engine.sync_engine

    @event.listens_for(sync, "before_cursor_execute")
    def _statement(conn: Any, _cursor: Any, sql: str, params: Any, _context: Any, _many: bool) -> None:
        log.record(id(conn.connection.dbapi_connection), sql, params)

    for name in ("commit", "rollback"):

        @event.listens_for(sync, name)
        def _ended(conn: Any) -> None:
            log.transaction_ended(id(conn.connection.dbapi_connection))

    original = DriverStatement.fetchrow

    async def fetchrow(self: DriverStatement, engine: AsyncEngine, params: Any) -> Any:
        log.statements.append(Captured(log.current, self.sql, tuple(self.arguments(params)), ()))
        return await original(self, engine, params)

    monkeypatch.setattr(DriverStatement, "fetchrow", fetchrow)


async def explain(owner_dsn: str, role: str, captured: Captured) -> dict[str, Any]:
    """The executed plan of one captured statement, as `role` under its RLS settings. An insert
    whose row now exists (it ran once already, when captured) is planned without running."""
    try:
        return await _plan(owner_dsn, role, captured, "EXPLAIN (ANALYZE, FORMAT JSON) ")
    except asyncpg.UniqueViolationError:
        return await _plan(owner_dsn, role, captured, "EXPLAIN (FORMAT JSON) ")


async def _plan(owner_dsn: str, role: str, captured: Captured, explain: str) -> dict[str, Any]:
    conn = await asyncpg.connect(owner_dsn)
    try:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.execute(f'SET LOCAL ROLE "{role}"')
            for name, value in captured.rls:
                await conn.execute("SELECT set_config($1, $2, true)", name, value)
            raw = await conn.fetchval(explain + captured.sql, *captured.params)
            plan: dict[str, Any] = json.loads(raw)[0]["Plan"]
            return plan
        finally:
            await transaction.rollback()
    finally:
        await conn.close()


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def wasteful_reads(plan: dict[str, Any], tables: frozenset[str], removed_limit: int) -> list[str]:
    """Sequential scans of `tables`, and reads of them (an index scan in the wrong order, say)
    that filter away more than `removed_limit` rows: either reads a large table wholesale."""
    found = []
    for node in nodes(plan):
        table = node.get("Relation Name")
        if table not in tables:
            continue
        if node["Node Type"] == "Seq Scan":
            found.append(f"Seq Scan on {table}")
        removed = node.get("Rows Removed by Filter", 0) * node.get("Actual Loops", 1)
        if removed > removed_limit:
            found.append(f"{node['Node Type']} on {table} filtered away {removed} rows")
    return found


def heavy_reads(plan: dict[str, Any], tables: frozenset[str], limit: int) -> list[str]:
    """Scans of `tables` that read more than `limit` rows (kept and filtered away, over every
    loop): for batch work, where a sequential scan stopped early by a LIMIT is fine but a read of
    the whole table per batch is not."""
    found = []
    for node in nodes(plan):
        table = node.get("Relation Name")
        if table not in tables:
            continue
        read = (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)) * node.get(
            "Actual Loops", 1
        )
        if read > limit:
            found.append(f"{node['Node Type']} on {table} read {read} rows")
    return found
