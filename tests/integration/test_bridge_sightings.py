"""Bridges' last-seen marks, buffered per worker (`BridgeSightings`) and written in one batch
(`SqlBridgeRepository.seen_many`), on SQLite and on PostgreSQL. On PostgreSQL the batch runs as the
unprivileged service role -- row-level security applies and the batch, which spans orgs, can only
go through `bulwark_bridges_seen` (SECURITY DEFINER, granted EXECUTE) -- while the rows are seeded
and read back as the tables' owner, behind the wall."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from types import TracebackType
from typing import Any, Self

import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.database import create_engine
from adapters.storage.tables import bridges, organisations, users
from adapters.storage.unit_of_work import SqlUnitOfWork, SqlUnitOfWorkFactory
from application.bridge_sightings import BridgeSightings
from application.ports.bridge_repository import LastSeen
from domain.bridges import BridgeStatus

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@dataclass(frozen=True)
class Storage:
    owner: AsyncEngine  # seeds and reads back (on PostgreSQL: bypasses row-level security)
    app: AsyncEngine  # what the service writes with (on PostgreSQL: the service role)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_urls(request: pytest.FixtureRequest) -> tuple[str, str]:
    if request.param == "sqlite":
        url = str(request.getfixturevalue("sqlite_url"))
        return url, url
    return str(request.getfixturevalue("fresh_pg_url")), str(request.getfixturevalue("app_pg_url"))


@pytest.fixture
async def storage(storage_urls: tuple[str, str]) -> AsyncIterator[Storage]:
    owner_url, app_url = storage_urls
    owner = create_engine(owner_url, pool_size=2)
    app = owner if app_url == owner_url else create_engine(app_url, pool_size=2)
    try:
        yield Storage(owner, app)
    finally:
        if app is not owner:
            await app.dispose()
        await owner.dispose()


@dataclass(frozen=True)
class Row:
    last_seen_at: datetime | None
    last_ip: str | None
    last_heartbeat: Any
    status: str


async def seed_org(storage: Storage) -> tuple[uuid.UUID, uuid.UUID]:
    org_id, user_id = uuid.uuid4(), uuid.uuid4()
    async with storage.owner.begin() as conn:
        await conn.execute(
            insert(organisations).values(
                id=org_id, name="Desk", personal=False, status="active", created_at=T0
            )
        )
        await conn.execute(
            insert(users).values(
                id=user_id,
                email=f"{user_id.hex[:12]}@example.com",
                display_name="Owner",
                password_hash="x",
                pepper_version="v1",
                platform_role="user",
                status="active",
                created_at=T0,
            )
        )
    return org_id, user_id


async def seed_bridge(
    storage: Storage,
    org: tuple[uuid.UUID, uuid.UUID],
    status: BridgeStatus = BridgeStatus.ONLINE,
    last_seen_at: datetime | None = None,
    last_ip: str | None = None,
    heartbeat: dict[str, object] | None = None,
) -> uuid.UUID:
    bridge_id = uuid.uuid4()
    async with storage.owner.begin() as conn:
        await conn.execute(
            insert(bridges).values(
                id=bridge_id,
                org_id=org[0],
                name="MT5",
                created_by=org[1],
                created_at=T0,
                key_hash=uuid.uuid4().hex,
                key_prefix="bwk_test",
                status=str(status),
                last_seen_at=last_seen_at,
                last_ip=last_ip,
                last_heartbeat=heartbeat,
                version=0,
            )
        )
    return bridge_id


async def row_of(storage: Storage, bridge_id: uuid.UUID) -> Row:
    async with storage.owner.connect() as conn:
        row = (await conn.execute(select(bridges).where(bridges.c.id == bridge_id))).one()
    return Row(row.last_seen_at, row.last_ip, row.last_heartbeat, row.status)


def mark(
    org: tuple[uuid.UUID, uuid.UUID],
    bridge_id: uuid.UUID,
    seconds: float,
    ip: str = "203.0.113.7",
    heartbeat: dict[str, object] | None = None,
) -> LastSeen:
    return LastSeen(org_id=org[0], bridge_id=bridge_id, at=at(seconds), ip=ip, heartbeat=heartbeat)


async def test_marks_of_bridges_in_several_orgs_are_written_in_one_flush(storage: Storage) -> None:
    orgs = [await seed_org(storage) for _ in range(3)]
    fleet = [(org, await seed_bridge(storage, org)) for org in orgs for _ in range(2)]
    offline = await seed_bridge(storage, orgs[0], BridgeStatus.OFFLINE, at(-60), "192.0.2.1")
    sightings = BridgeSightings(SqlUnitOfWorkFactory(storage.app))
    for i, (org, bridge_id) in enumerate(fleet):
        sightings.note(mark(org, bridge_id, i, ip=f"203.0.113.{i}"))
    sightings.note(mark(orgs[0], offline, 10, ip="203.0.113.99"))
    statements = count_statements(storage.app)

    assert sightings.pending == 7
    assert await sightings.flush() == 7

    assert sightings.pending == 0
    for i, (_, bridge_id) in enumerate(fleet):
        assert await row_of(storage, bridge_id) == Row(at(i), f"203.0.113.{i}", None, "online")
    assert await row_of(storage, offline) == Row(at(10), "203.0.113.99", None, "online")
    if storage.app.dialect.name == "postgresql":
        assert statements == ["SELECT bulwark_bridges_seen"]  # one statement for every org


def count_statements(engine: AsyncEngine) -> list[str]:
    """The first words of every statement the engine runs from now on."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()[:2]).split("(")[0])

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    return seen


async def test_an_older_mark_never_overwrites_a_newer_one(storage: Storage) -> None:
    org = await seed_org(storage)
    seen_later = await seed_bridge(storage, org, last_seen_at=at(100), last_ip="192.0.2.1")
    fresh = await seed_bridge(storage, org)
    sightings = BridgeSightings(SqlUnitOfWorkFactory(storage.app))

    sightings.note(mark(org, seen_later, 50, ip="203.0.113.50"))
    sightings.note(mark(org, fresh, 200, ip="203.0.113.200"))
    assert await sightings.flush() == 1
    sightings.note(mark(org, fresh, 150, ip="203.0.113.150"))  # a slower worker's older mark
    assert await sightings.flush() == 0

    assert await row_of(storage, seen_later) == Row(at(100), "192.0.2.1", None, "online")
    assert await row_of(storage, fresh) == Row(at(200), "203.0.113.200", None, "online")


@pytest.mark.parametrize("status", [BridgeStatus.REVOKED, BridgeStatus.SUSPENDED, BridgeStatus.PENDING])
async def test_a_bridge_that_is_not_live_is_not_touched(storage: Storage, status: BridgeStatus) -> None:
    org = await seed_org(storage)
    stopped = await seed_bridge(storage, org, status, at(0), "192.0.2.1", {"balance": 1.0})
    live = await seed_bridge(storage, org)
    sightings = BridgeSightings(SqlUnitOfWorkFactory(storage.app))
    sightings.note(mark(org, stopped, 30, heartbeat={"balance": 2.0}))
    sightings.note(mark(org, live, 30))

    assert await sightings.flush() == 1

    assert await row_of(storage, stopped) == Row(at(0), "192.0.2.1", {"balance": 1.0}, str(status))
    assert (await row_of(storage, live)).last_seen_at == at(30)


async def test_a_mark_naming_another_org_changes_nothing(storage: Storage) -> None:
    own, other = await seed_org(storage), await seed_org(storage)
    bridge_id = await seed_bridge(storage, own, last_seen_at=at(0), last_ip="192.0.2.1")
    sightings = BridgeSightings(SqlUnitOfWorkFactory(storage.app))
    sightings.note(mark(other, bridge_id, 30, heartbeat={"balance": 9.0}))

    assert await sightings.flush() == 0

    assert await row_of(storage, bridge_id) == Row(at(0), "192.0.2.1", None, "online")


async def test_the_heartbeat_is_stored_and_a_mark_without_one_keeps_it(storage: Storage) -> None:
    org = await seed_org(storage)
    bridge_id = await seed_bridge(storage, org)
    sightings = BridgeSightings(SqlUnitOfWorkFactory(storage.app))
    beat: dict[str, object] = {"balance": 1250.5, "equity": 1190.25, "positions": 3, "symbols": ["EURUSD"]}

    sightings.note(mark(org, bridge_id, 10, ip="203.0.113.1", heartbeat=beat))
    assert await sightings.flush() == 1
    assert await row_of(storage, bridge_id) == Row(at(10), "203.0.113.1", beat, "online")

    sightings.note(mark(org, bridge_id, 20, ip="203.0.113.2"))  # a call that is not a heartbeat
    assert await sightings.flush() == 1
    assert await row_of(storage, bridge_id) == Row(at(20), "203.0.113.2", beat, "online")

    newer: dict[str, object] = {"balance": 1300.0}
    sightings.note(mark(org, bridge_id, 30, heartbeat=newer))
    assert await sightings.flush() == 1
    assert (await row_of(storage, bridge_id)).last_heartbeat == newer


async def test_note_keeps_only_the_newest_mark_of_each_bridge(storage: Storage) -> None:
    org = await seed_org(storage)
    one, other = await seed_bridge(storage, org), await seed_bridge(storage, org)
    sightings = BridgeSightings(SqlUnitOfWorkFactory(storage.app))

    sightings.note(mark(org, one, 20, ip="203.0.113.20", heartbeat={"n": 20}))
    sightings.note(mark(org, one, 10, ip="203.0.113.10", heartbeat={"n": 10}))  # late, older
    sightings.note(mark(org, one, 30, ip="203.0.113.30"))
    sightings.note(mark(org, other, 5, ip="203.0.113.5"))
    assert sightings.pending == 2

    assert await sightings.flush() == 2

    # Only the newest mark is written: its lack of a heartbeat keeps the row's (none here).
    assert await row_of(storage, one) == Row(at(30), "203.0.113.30", None, "online")
    assert await row_of(storage, other) == Row(at(5), "203.0.113.5", None, "online")


class BrokenBridges:
    async def seen_many(self, marks: list[LastSeen]) -> int:
        raise ConnectionResetError("the database went away")


class FlakyUnitOfWork:
    """A real unit of work whose bridge repository fails while `failing` is set."""

    def __init__(self, real: SqlUnitOfWork, failing: bool) -> None:
        self._real = real
        self._failing = failing
        self.bridges: Any = None

    async def __aenter__(self) -> Self:
        await self._real.__aenter__()
        self.bridges = BrokenBridges() if self._failing else self._real.bridges
        return self

    async def commit(self) -> None:
        await self._real.commit()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._real.__aexit__(exc_type, exc, tb)


class FlakyUnitOfWorkFactory:
    def __init__(self, engine: AsyncEngine) -> None:
        self._real = SqlUnitOfWorkFactory(engine)
        self.failing = True

    def __call__(self, *, autocommit: bool = False) -> Any:
        return FlakyUnitOfWork(self._real(autocommit=autocommit), self.failing)


async def test_a_failed_flush_keeps_its_marks_for_the_next_and_newer_marks_win(storage: Storage) -> None:
    org = await seed_org(storage)
    one, other = await seed_bridge(storage, org), await seed_bridge(storage, org)
    uow = FlakyUnitOfWorkFactory(storage.app)
    sightings = BridgeSightings(uow)
    sightings.note(mark(org, one, 10, ip="203.0.113.10"))
    sightings.note(mark(org, other, 10, ip="203.0.113.11"))

    with pytest.raises(ConnectionResetError):
        await sightings.flush()

    assert sightings.pending == 2
    assert (await row_of(storage, one)).last_seen_at is None
    sightings.note(mark(org, one, 20, ip="203.0.113.20"))  # came while the database was away
    sightings.note(mark(org, other, 5, ip="203.0.113.5"))  # older than the kept one: ignored
    uow.failing = False

    assert await sightings.flush() == 2

    assert sightings.pending == 0
    assert await row_of(storage, one) == Row(at(20), "203.0.113.20", None, "online")
    assert await row_of(storage, other) == Row(at(10), "203.0.113.11", None, "online")


async def test_stop_flushes_what_is_pending(storage: Storage) -> None:
    org = await seed_org(storage)
    bridge_id = await seed_bridge(storage, org)
    sightings = BridgeSightings(SqlUnitOfWorkFactory(storage.app), interval_seconds=3_600)
    await sightings.start()
    sightings.note(mark(org, bridge_id, 10, heartbeat={"balance": 1.0}))

    await sightings.stop()

    assert sightings.pending == 0
    assert await row_of(storage, bridge_id) == Row(at(10), "203.0.113.7", {"balance": 1.0}, "online")


async def test_a_started_buffer_flushes_on_its_own(storage: Storage) -> None:
    org = await seed_org(storage)
    bridge_id = await seed_bridge(storage, org)
    sightings = BridgeSightings(SqlUnitOfWorkFactory(storage.app), interval_seconds=0.05)
    await sightings.start()
    try:
        sightings.note(mark(org, bridge_id, 10))
        await until(lambda: _seen_at(storage, bridge_id, at(10)))
        assert sightings.pending == 0
    finally:
        await sightings.stop()


async def _seen_at(storage: Storage, bridge_id: uuid.UUID, when: datetime) -> bool:
    return (await row_of(storage, bridge_id)).last_seen_at == when


async def until(condition: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_marks_in_another_time_zone_are_compared_as_instants(storage: Storage) -> None:
    """14:00:50+02:00 is before 12:01:40Z although its wall clock reads later."""
    org = await seed_org(storage)
    seen_later = await seed_bridge(storage, org, last_seen_at=at(100), last_ip="192.0.2.1")
    seen_earlier = await seed_bridge(storage, org, last_seen_at=at(100), last_ip="192.0.2.1")
    east = timezone(timedelta(hours=2))
    west = timezone(timedelta(hours=-5))
    sightings = BridgeSightings(SqlUnitOfWorkFactory(storage.app))
    sightings.note(LastSeen(org[0], seen_later, at(50).astimezone(east), "203.0.113.50"))
    sightings.note(LastSeen(org[0], seen_earlier, at(150).astimezone(west), "203.0.113.150"))

    assert await sightings.flush() == 1

    assert await row_of(storage, seen_later) == Row(at(100), "192.0.2.1", None, "online")
    assert await row_of(storage, seen_earlier) == Row(at(150), "203.0.113.150", None, "online")
