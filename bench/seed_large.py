"""Fills a migrated PostgreSQL database with production-sized data, fast (COPY, binary).

Run: .venv/bin/python bench/seed_large.py DSN [--factor 1.0]

At factor 1: 1,000,000 users, 200,000 orgs, 3,000,000 memberships, 5,000,000 sessions (most
expired or revoked) with a refresh token each, 200,000 one-time tokens (most expired), a custom
role per org and 1,000,000 role assignments, and 20,000,000 audit entries over two years, all
hash-chained. Every count scales with --factor (a test runs it at 0.001).

It runs as the tables' owner (the role that ran `bulwark db upgrade`), as the migrations define
it: row-level security does not apply to the owner, and the service's own role (granted by
`bulwark db grant-service-role`) may not even write the audit log in bulk. The rows it writes
still satisfy every policy's rule (each org-scoped row carries the org it belongs to), so the
service reads them under row-level security as it reads its own.

The audit part is one function (`seed_audit`) on purpose: the audit schema is being redesigned,
and that function is all that changes with it."""

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from domain.audit import ActorKind, AuditEvent, chain_hash, normalise_details
from domain.permissions import ADMINISTRATOR_ROLE_ID

# Rows per COPY: big enough that a statement's overhead vanishes, small enough to show progress.
CHUNK = 50_000
TWO_YEARS = timedelta(days=730)
AUDIT_SLICE = 200_000  # audit entries (and their links) generated and copied at a time
# One hash for every seeded account: nobody logs in as them (the benchmark registers its own
# users through the API), but the column holds what a real one does.
PLACEHOLDER_HASH = (
    "$argon2id$v=19$m=47104,t=1,p=1$c2VlZGVkLXVzZXI$4mFgbxsD7bQ2tBRJ4aQ0SJv2mYbIe9H0v1c3FZ8Qh2s"
)
ACTIONS = (
    "session.logout",
    "session.revoked",
    "user.profile_updated",
    "org.switched",
    "member.joined",
    "member.role_assigned",
    "member.removed",
    "role.updated",
    "bridge.renamed",
    "mfa.failure",
)
# The share of audit entries (of those with an org) that go to org 0, the "hot" org: a customer
# with a long history, where the audit search has the most to skip.
HOT_ORG_SHARE = 0.01


@dataclass(frozen=True)
class Sizes:
    users: int
    orgs: int
    memberships_per_user: int
    sessions_per_user: int
    audit_entries: int

    @classmethod
    def at(cls, factor: float) -> "Sizes":
        return cls(
            users=max(10, round(1_000_000 * factor)),
            orgs=max(3, round(200_000 * factor)),
            memberships_per_user=3,
            sessions_per_user=5,
            audit_entries=max(10, round(20_000_000 * factor)),
        )


@dataclass(frozen=True)
class World:
    """What later parts need to know of the earlier ones (ids are derived, not kept in lists)."""

    sizes: Sizes
    now: datetime
    users: list[uuid.UUID]
    orgs: list[uuid.UUID]

    def orgs_of(self, user_index: int) -> list[int]:
        # Distinct orgs per user (orgs >= 3): spread evenly, ~15 members an org at factor 1.
        stride = self.sizes.orgs // self.sizes.memberships_per_user
        return [(user_index + k * stride) % self.sizes.orgs for k in range(self.sizes.memberships_per_user)]


def _is_administrator(user_index: int, k: int) -> bool:
    return (user_index + k) % 15 == 0


def _uuids(rng: random.Random, n: int) -> list[uuid.UUID]:
    return [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(n)]


def _chunks(rows: Iterator[tuple[Any, ...]], size: int = CHUNK) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _copy(
    conn: asyncpg.Connection,
    table: str,
    columns: Sequence[str],
    rows: Iterator[tuple[Any, ...]],
    log: Callable[[str], None],
) -> int:
    started, total = time.monotonic(), 0
    for chunk in _chunks(rows):
        await conn.copy_records_to_table(table, records=chunk, columns=list(columns))
        total += len(chunk)
        if total % (CHUNK * 20) == 0:
            log(f"  {table}: {total:,} rows ({total / (time.monotonic() - started):,.0f}/s)")
    log(f"{table}: {total:,} rows in {time.monotonic() - started:.1f}s")
    return total


async def _require_owner(conn: asyncpg.Connection) -> None:
    owner = await conn.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'audit_events'")
    if owner is None:
        raise SystemExit("seed_large: the database is not migrated (run `bulwark db upgrade` first)")
    privileged = await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    if owner != await conn.fetchval("SELECT current_user") and not privileged:
        raise SystemExit(f"seed_large: connect as the tables' owner ({owner}), not the service's role")


async def seed_identity(
    conn: asyncpg.Connection, world: World, rng: random.Random, log: Callable[[str], None]
) -> None:
    sizes, now = world.sizes, world.now

    def orgs() -> Iterator[tuple[Any, ...]]:
        for n, org in enumerate(world.orgs):
            created = now - TWO_YEARS * rng.random()
            yield (org, f"seed org {n}", False, "active", n % 50 == 49, created, 0)

    await _copy(
        conn,
        "organisations",
        ("id", "name", "personal", "status", "require_2fa", "created_at", "authz_version"),
        orgs(),
        log,
    )

    def users() -> Iterator[tuple[Any, ...]]:
        for n, user in enumerate(world.users):
            created = now - TWO_YEARS * rng.random()
            status = "disabled" if n % 97 == 0 else "active"
            yield (
                user,
                f"seed-{n}-{user.hex[:8]}@seed.invalid",
                f"Seeded user {n}",
                PLACEHOLDER_HASH,
                "seed",
                "user",
                status,
                created,
                world.orgs[world.orgs_of(n)[0]],
                created,
                None,
                "free",
            )

    await _copy(
        conn,
        "users",
        (
            "id",
            "email",
            "display_name",
            "password_hash",
            "pepper_version",
            "platform_role",
            "status",
            "email_verified_at",
            "default_org_id",
            "created_at",
            "updated_at",
            "plan",
        ),
        users(),
        log,
    )

    def memberships() -> Iterator[tuple[Any, ...]]:
        for n, user in enumerate(world.users):
            for k, org in enumerate(world.orgs_of(n)):
                role = "administrator" if _is_administrator(n, k) else "member"
                yield (world.orgs[org], user, role, now - TWO_YEARS * rng.random())

    await _copy(conn, "memberships", ("org_id", "user_id", "role", "created_at"), memberships(), log)

    roles = _uuids(rng, sizes.orgs)

    def custom_roles() -> Iterator[tuple[Any, ...]]:
        for org, role in zip(world.orgs, roles, strict=True):
            yield (role, org, "Traders", "", json.dumps(["orders:create", "orders:read"]), now, None)

    await _copy(
        conn,
        "roles",
        ("id", "org_id", "name", "description", "permissions", "created_at", "updated_at"),
        custom_roles(),
        log,
    )

    def assignments() -> Iterator[tuple[Any, ...]]:
        # A third of the memberships hold the org's custom role; every org administrator holds
        # the Administrator role (the rule of migration 0004).
        for n, user in enumerate(world.users):
            orgs = world.orgs_of(n)
            org = orgs[n % sizes.memberships_per_user]
            yield (world.orgs[org], user, roles[org], now)
            for k, admin_org in enumerate(orgs):
                if _is_administrator(n, k):
                    yield (world.orgs[admin_org], user, ADMINISTRATOR_ROLE_ID, now)

    await _copy(conn, "member_roles", ("org_id", "user_id", "role_id", "created_at"), assignments(), log)


async def seed_sessions(
    conn: asyncpg.Connection, world: World, rng: random.Random, log: Callable[[str], None]
) -> None:
    """Five sessions a user over two years, each with a refresh token: about 2 % live, a quarter
    revoked, the rest expired (idle or absolute). What a year of logins leaves behind."""
    now = world.now
    sessions: list[tuple[Any, ...]] = []
    idle, absolute = timedelta(days=7), timedelta(days=30)

    def rows() -> Iterator[tuple[Any, ...]]:
        for n, user in enumerate(world.users):
            orgs = world.orgs_of(n)
            for k in range(world.sizes.sessions_per_user):
                session = uuid.UUID(int=rng.getrandbits(128), version=4)
                live = rng.random() < 0.02
                created = now - (timedelta(days=2) * rng.random() if live else TWO_YEARS * rng.random())
                used = min(now, created + timedelta(days=3) * rng.random())
                revoked = None if live or rng.random() > 0.25 else used
                sessions.append((session, created))
                yield (
                    session,
                    user,
                    world.orgs[orgs[k % len(orgs)]],
                    created,
                    used,
                    created,
                    min(used + idle, created + absolute),
                    created + absolute,
                    f"10.{n % 250}.{k}.{n % 200}",
                    "Mozilla/5.0 (seeded)",
                    revoked,
                    "logout" if revoked else None,
                )

    await _copy(
        conn,
        "sessions",
        (
            "id",
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
        ),
        rows(),
        log,
    )

    def tokens() -> Iterator[tuple[Any, ...]]:
        for session, created in sessions:
            yield (rng.getrandbits(256).to_bytes(32).hex(), session, created, None, None)

    await _copy(
        conn,
        "refresh_tokens",
        ("token_hash", "session_id", "created_at", "rotated_at", "successor_hash"),
        tokens(),
        log,
    )
    sessions.clear()

    def one_time() -> Iterator[tuple[Any, ...]]:
        for n in range(0, len(world.users), 5):
            created = now - TWO_YEARS * rng.random()
            purpose = "verify_email" if n % 2 else "reset_password"
            used = created + timedelta(minutes=5) if n % 3 else None
            yield (
                rng.getrandbits(256).to_bytes(32).hex(),
                world.users[n],
                purpose,
                created,
                created + timedelta(hours=1),
                used,
            )

    await _copy(
        conn,
        "one_time_tokens",
        ("token_hash", "user_id", "purpose", "created_at", "expires_at", "used_at"),
        one_time(),
        log,
    )


async def seed_audit(
    conn: asyncpg.Connection, world: World, rng: random.Random, log: Callable[[str], None]
) -> tuple[int, str]:
    """`audit_entries` entries over two years, sealed as the service's sealer would: each entry
    in its month's partition with an id from the log's sequence, its link in audit_chain_links
    continuing the chain from the sealed head (hashes from domain.audit), then the head moved to
    the last one. Returns the new head. Needs every existing entry sealed first (`bulwark jobs
    run`), so the seeded links follow the chain without a gap."""
    head = await conn.fetchrow("SELECT last_id, last_hash FROM audit_chain_head WHERE id = 1 FOR UPDATE")
    if head is None:
        raise SystemExit("seed_large: audit_chain_head has no row (is the database migrated?)")
    last_id, last_hash = int(head["last_id"]), str(head["last_hash"])
    newest = await conn.fetchval("SELECT max(id) FROM audit_events")
    if newest is not None and int(newest) > last_id:
        raise SystemExit("seed_large: audit entries are not all sealed yet: run `bulwark jobs run` first")
    # Ids the sequence already handed out (rolled-back writers) are skipped, never reused.
    used = await conn.fetchval("SELECT last_value FROM audit_events_id_seq")
    next_id = max(last_id, int(used or 0)) + 1
    total = world.sizes.audit_entries
    start = world.now - TWO_YEARS
    month = start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    while month <= world.now:
        await conn.execute("SELECT bulwark_audit_partition($1::date)", month.date())
        month = (month + timedelta(days=32)).replace(day=1)
    links: list[tuple[int, str, str]] = []  # the current chunk's, written after its entries
    step = TWO_YEARS / total
    users, orgs = world.users, world.orgs
    hot = orgs[0]

    def rows(first: int, end: int) -> Iterator[tuple[Any, ...]]:
        nonlocal last_id, last_hash
        for n in range(first, end):
            user_index = rng.randrange(len(users))
            roll = rng.random()
            if roll < 0.15:
                org = None  # platform-level entries (logins of no org, admin actions)
            elif roll < 0.15 + HOT_ORG_SHARE:
                org = hot
            else:
                org = orgs[world.orgs_of(user_index)[n % world.sizes.memberships_per_user]]
            action = ACTIONS[n % len(ACTIONS)]
            details = normalise_details({"seq": n, "reason": "seeded"} if n % 4 else {})
            event = AuditEvent(
                action=action,
                actor_kind=ActorKind.USER,
                actor_user_id=users[user_index],
                org_id=org,
                target_type="session" if action.startswith("session") else "user",
                target_id=str(users[(user_index + 1) % len(users)]),
                source_ip=f"10.{n % 250}.{(n >> 8) % 250}.{n % 199}",
                user_agent="Mozilla/5.0 (seeded)",
                request_id=f"seed-{n:x}",
                details=details,
            )
            occurred = (start + step * n).astimezone(UTC)
            seq = next_id + n
            digest = chain_hash(last_hash, seq, occurred, event)
            links.append((seq, last_hash, digest))
            yield (
                seq,
                occurred,
                event.actor_user_id,
                str(event.actor_kind),
                org,
                action,
                event.target_type,
                event.target_id,
                event.source_ip,
                event.user_agent,
                event.request_id,
                json.dumps(details),
            )
            last_id, last_hash = seq, digest

    columns = (
        "id",
        "occurred_at",
        "actor_user_id",
        "actor_kind",
        "org_id",
        "action",
        "target_type",
        "target_id",
        "source_ip",
        "user_agent",
        "request_id",
        "details",
    )
    # In slices, so the links of 20 million entries never sit in memory at once.
    for first in range(0, total, AUDIT_SLICE):
        end = min(total, first + AUDIT_SLICE)
        await _copy(conn, "audit_events", columns, rows(first, end), lambda _line: None)
        await _copy(conn, "audit_chain_links", ("id", "prev_hash", "hash"), iter(links), lambda _line: None)
        links.clear()
        log(f"  audit_events and their links: {end:,} of {total:,}")
    await conn.execute("SELECT setval('audit_events_id_seq', $1)", last_id)
    await conn.execute(
        "UPDATE audit_chain_head SET last_id = $1, last_hash = $2 WHERE id = 1", last_id, last_hash
    )
    return last_id, last_hash


async def seed(
    dsn: str,
    factor: float = 1.0,
    *,
    now: datetime | None = None,
    random_seed: int = 21,
    analyze: bool = True,
    log: Callable[[str], None] = print,
) -> Sizes:
    """Seeds the database at `dsn` (asyncpg form, as the tables' owner). Each part commits on its
    own, so a long seed shows its progress to other sessions; the audit part holds the chain head's
    lock while it appends, as any append does."""
    sizes = Sizes.at(factor)
    rng = random.Random(random_seed)
    world = World(sizes, now or datetime.now(UTC), _uuids(rng, sizes.users), _uuids(rng, sizes.orgs))
    conn = await asyncpg.connect(dsn)
    try:
        await _require_owner(conn)
        started = time.monotonic()
        async with conn.transaction():
            await seed_identity(conn, world, rng, log)
        async with conn.transaction():
            await seed_sessions(conn, world, rng, log)
        async with conn.transaction():
            await seed_audit(conn, world, rng, log)
        if analyze:
            await conn.execute("ANALYZE")
        log(f"seeded at factor {factor} in {time.monotonic() - started:.0f}s")
    finally:
        await conn.close()
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dsn", help="postgresql://owner@host:port/database (migrated)")
    parser.add_argument(
        "--factor", type=float, default=1.0, help="scale of every count (1 = production size)"
    )
    args = parser.parse_args()
    dsn = args.dsn.replace("postgresql+asyncpg://", "postgresql://", 1)
    asyncio.run(seed(dsn, args.factor, log=lambda line: print(line, flush=True)))
    return 0


async def join_org_0(owner_dsn: str, user_id: str) -> str:
    """The user becomes an administrator of seeded org 0, the one with the longest audit history
    (written as the owner, as an accepted invitation leaves it): the benchmark's and the plan
    test's searching administrator."""
    conn = await asyncpg.connect(owner_dsn)
    try:
        org = await conn.fetchval("SELECT id FROM organisations WHERE name = 'seed org 0'")
        if org is None:
            raise RuntimeError("the large database has no 'seed org 0': was it seeded by seed_large.py?")
        await conn.execute(
            "INSERT INTO memberships (org_id, user_id, role, created_at) "
            "VALUES ($1, $2, 'administrator', now())",
            org,
            uuid.UUID(user_id),
        )
        await conn.execute(
            "INSERT INTO member_roles (org_id, user_id, role_id, created_at) VALUES ($1, $2, $3, now())",
            org,
            uuid.UUID(user_id),
            ADMINISTRATOR_ROLE_ID,
        )
        return str(org)
    finally:
        await conn.close()


if __name__ == "__main__":
    sys.exit(main())
