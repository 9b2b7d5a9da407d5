"""Rows the benchmarks write straight into their throw-away database, as its owner: an org with
one user who administers it (what a bridge or a broker connection needs to be usable)."""

import uuid
from datetime import datetime

import asyncpg


async def org_with_owner(
    conn: asyncpg.Connection, n: int, now: datetime, prefix: str
) -> tuple[uuid.UUID, uuid.UUID]:
    org, user = uuid.uuid4(), uuid.uuid4()
    await conn.execute(
        "INSERT INTO organisations (id, name, personal, status, require_2fa, created_at) "
        "VALUES ($1, $2, true, 'active', false, $3)",
        org,
        f"bench {n}",
        now,
    )
    await conn.execute(
        "INSERT INTO users (id, email, display_name, password_hash, pepper_version, platform_role, "
        "status, email_verified_at, default_org_id, created_at) "
        "VALUES ($1, $2, 'Bench', 'x', 'pv', 'user', 'active', $3, $4, $3)",
        user,
        f"{prefix}-{n}-{user.hex[:8]}@bench.invalid",
        now,
        org,
    )
    await conn.execute(
        "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, 'administrator', $3)",
        org,
        user,
        now,
    )
    return org, user
