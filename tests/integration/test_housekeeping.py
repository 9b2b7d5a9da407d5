"""Housekeeping on both storage backends and both limiters: what goes (sessions and tokens dead for
longer than the retention) and what must stay (live sessions and every refresh token of theirs,
grace successors included; sessions revoked recently, which the revocation store reloads; tokens
not yet expired, used or not; rate-limit entries still inside a window)."""

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.limiter.in_process import InProcessSlidingWindowLimiter
from adapters.limiter.redis_key_trim import RedisRateLimitKeys
from adapters.limiter.redis_sliding_window import RedisSlidingWindowLimiter
from adapters.storage.expired_rows import SqlExpiredRows
from adapters.storage.tables import (
    admin_deletion_tokens,
    broker_oauth_states,
    mfa_challenges,
    one_time_tokens,
    refresh_tokens,
    sessions,
    sso_states,
)
from adapters.storage.unit_of_work import SqlUnitOfWork
from application.ports.housekeeping import LimiterKeyCheck
from application.ports.rate_limiter import RateLimit
from application.use_cases.housekeeping import HousekeepingPolicy, RunHousekeeping
from domain.one_time_tokens import OneTimeToken, TokenPurpose
from domain.platform_admins import PlatformAdmin
from domain.sessions import RefreshToken, Session
from domain.users import User
from tests.integration.storage_seed import new_org, new_session, new_user

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
RETENTION = timedelta(days=30)
LONG_AGO = NOW - RETENTION - timedelta(days=1)
RECENTLY = NOW - timedelta(hours=1)


class PinnedClock:
    def now(self) -> datetime:
        return NOW


class NoLimiterKeys:
    async def trim(self, longest_window_seconds: float) -> LimiterKeyCheck:
        return LimiterKeyCheck(0, 0)


def housekeeping(engine: AsyncEngine, batch_size: int) -> RunHousekeeping:
    policy = HousekeepingPolicy(RETENTION, batch_size, 3600.0, pause_seconds=0)
    return RunHousekeeping(SqlExpiredRows(engine), NoLimiterKeys(), PinnedClock(), policy)


async def a_user(engine: AsyncEngine) -> User:
    org = new_org(NOW - timedelta(days=400))
    user = new_user(org, NOW - timedelta(days=400))
    async with SqlUnitOfWork(engine) as uow:
        await uow.orgs.add(org)
        await uow.users.add(user)
        await uow.commit()
    return user


async def store(engine: AsyncEngine, session: Session, *tokens: RefreshToken) -> Session:
    async with SqlUnitOfWork(engine) as uow:
        await uow.sessions.add(session)
        for token in tokens:
            await uow.sessions.add_refresh_token(token)
        await uow.commit()
    return session


def started(user: User, at: datetime, **changes: Any) -> Session:
    session = new_session(user, at)
    session.absolute_expires_at = at + timedelta(days=30)
    session.idle_expires_at = min(at + timedelta(days=7), session.absolute_expires_at)
    return dataclasses.replace(session, **changes)


def token(
    session: Session, name: str, rotated_at: datetime | None = None, successor: str | None = None
) -> RefreshToken:
    return RefreshToken(f"{name}-{session.id.hex}", session.id, session.created_at, rotated_at, successor)


async def ids_of(engine: AsyncEngine, column: Any) -> set[Any]:
    async with engine.connect() as conn:
        return set((await conn.execute(select(column))).scalars())


async def test_dead_sessions_past_retention_go_with_their_tokens_and_the_rest_stays(
    engine: AsyncEngine,
) -> None:
    user = await a_user(engine)
    live = started(user, NOW - timedelta(days=2))
    # A live session's whole chain stays: an old rotated token (reuse detection), the token just
    # rotated with its grace successor, and the successor itself.
    live_tokens = (
        token(live, "old", NOW - timedelta(days=40), f"previous-{live.id.hex}"),
        token(live, "previous", RECENTLY, f"current-{live.id.hex}"),
        token(live, "current"),
    )
    await store(engine, live, *live_tokens)
    revoked_long_ago = started(user, NOW - timedelta(days=45), revoked_at=LONG_AGO, revoked_reason="logout")
    revoked_tokens = (token(revoked_long_ago, "r1", LONG_AGO, "x"), token(revoked_long_ago, "r2"))
    await store(engine, revoked_long_ago, *revoked_tokens)
    expired_long_ago = started(user, NOW - timedelta(days=70))
    await store(engine, expired_long_ago, token(expired_long_ago, "e"))
    expired_long_ago_2 = await store(engine, started(user, NOW - timedelta(days=62)))
    revoked_recently = await store(
        engine, started(user, NOW - timedelta(days=3), revoked_at=RECENTLY, revoked_reason="logout")
    )
    expired_recently = await store(engine, started(user, NOW - timedelta(days=32)))
    # Idle-expired long ago but not at its absolute end: kept until that end plus the retention.
    idle_expired = await store(
        engine,
        started(user, NOW - timedelta(days=29), idle_expires_at=NOW - timedelta(days=22)),
    )

    report = await housekeeping(engine, batch_size=2)()

    assert report.sessions_deleted == 3
    assert await ids_of(engine, sessions.c.id) == {
        live.id,
        revoked_recently.id,
        expired_recently.id,
        idle_expired.id,
    }
    assert {expired_long_ago.id, expired_long_ago_2.id, revoked_long_ago.id}.isdisjoint(
        await ids_of(engine, sessions.c.id)
    )
    remaining = await ids_of(engine, refresh_tokens.c.token_hash)
    assert {t.token_hash for t in live_tokens} <= remaining
    assert remaining.isdisjoint(t.token_hash for t in revoked_tokens)
    # Nothing left to do: a second run deletes nothing.
    assert (await housekeeping(engine, batch_size=2)()).sessions_deleted == 0


async def test_spent_tokens_past_retention_go_and_unexpired_ones_stay(engine: AsyncEngine) -> None:
    user = await a_user(engine)

    def one_time(name: str, expires_at: datetime, used: bool = False) -> OneTimeToken:
        return OneTimeToken(
            token_hash=f"{name}-{uuid.uuid4().hex}",
            user_id=user.id,
            purpose=TokenPurpose.RESET_PASSWORD,
            created_at=expires_at - timedelta(hours=1),
            expires_at=expires_at,
            used_at=expires_at - timedelta(minutes=30) if used else None,
        )

    gone = [one_time("old", LONG_AGO), one_time("old-used", LONG_AGO, used=True)]
    kept = [
        one_time("recent", RECENTLY),
        one_time("pending", NOW + timedelta(hours=1)),
        one_time("used-not-expired", NOW + timedelta(hours=1), used=True),
    ]
    async with SqlUnitOfWork(engine) as uow:
        for t in gone + kept:
            await uow.one_time_tokens.add(t)
        await uow.commit()
    challenges = {"old-challenge": LONG_AGO, "open-challenge": NOW + timedelta(minutes=5)}
    async with engine.begin() as conn:
        for name, expires_at in challenges.items():
            await conn.execute(
                insert(mfa_challenges).values(
                    token_hash=name,
                    user_id=user.id,
                    created_at=expires_at - timedelta(minutes=5),
                    expires_at=expires_at,
                    failures=0,
                )
            )

    report = await housekeeping(engine, batch_size=2)()

    assert report.tokens_deleted == 3
    assert await ids_of(engine, one_time_tokens.c.token_hash) == {t.token_hash for t in kept}
    assert await ids_of(engine, mfa_challenges.c.token_hash) == {"open-challenge"}


async def test_expired_flow_states_and_deletion_tokens_go_and_live_ones_stay(engine: AsyncEngine) -> None:
    org = new_org(NOW - timedelta(days=400))
    user = new_user(org, NOW - timedelta(days=400))
    async with SqlUnitOfWork(engine) as uow:
        await uow.orgs.add(org)
        await uow.users.add(user)
        await uow.platform_admins.add(PlatformAdmin(user.id, "x", "p", b"e", NOW, factor_confirmed_at=NOW))
        await uow.commit()
    soon = NOW + timedelta(minutes=5)
    async with engine.begin() as conn:
        for name, expires_at in (("old", LONG_AGO), ("live", soon)):
            created = expires_at - timedelta(minutes=10)
            await conn.execute(
                insert(broker_oauth_states).values(
                    state_hash=f"oauth-{name}",
                    user_id=user.id,
                    org_id=org.id,
                    session_id=uuid.uuid4(),
                    scope="trading",
                    browser_hash="b",
                    created_at=created,
                    expires_at=expires_at,
                )
            )
            await conn.execute(
                insert(sso_states).values(
                    state_hash=f"sso-{name}",
                    provider="google",
                    purpose="login",
                    nonce="n",
                    code_verifier="v",
                    browser_hash="b",
                    return_to="/",
                    created_at=created,
                    expires_at=expires_at,
                )
            )
            await conn.execute(
                insert(admin_deletion_tokens).values(
                    token_hash=f"deletion-{name}",
                    admin_id=user.id,
                    target_id=user.id,
                    summary_digest="d",
                    created_at=created,
                    expires_at=expires_at,
                )
            )

    report = await housekeeping(engine, batch_size=10)()

    assert report.tokens_deleted == 3
    assert await ids_of(engine, broker_oauth_states.c.state_hash) == {"oauth-live"}
    assert await ids_of(engine, sso_states.c.state_hash) == {"sso-live"}
    assert await ids_of(engine, admin_deletion_tokens.c.token_hash) == {"deletion-live"}


async def test_a_batch_deletes_no_more_than_its_size(engine: AsyncEngine) -> None:
    user = await a_user(engine)
    for _ in range(5):
        await store(engine, started(user, NOW - timedelta(days=90)))
    rows = SqlExpiredRows(engine)
    assert await rows.purge_dead_sessions(NOW - RETENTION, 2) == 2
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(sessions))).scalar() == 3
    assert await rows.purge_dead_sessions(NOW - RETENTION, 10) == 3


@pytest.mark.redis
async def test_redis_limiter_keys_expire_and_a_straggler_without_expiry_is_repaired(
    redis_client: aioredis.Redis, redis_namespace: str
) -> None:
    limiter = RedisSlidingWindowLimiter(redis_client, redis_namespace)
    await limiter.hit("login:fresh", RateLimit(5, 60))
    seconds, micros = await redis_client.time()
    now_us = seconds * 1_000_000 + micros
    straggler = f"{redis_namespace}:rl:straggler"
    # Written without an expiry (as by an older version): one entry long out of every window, one
    # inside the longest window.
    await redis_client.zadd(straggler, {"ancient": now_us - 10_000 * 1_000_000, "recent": now_us - 1_000_000})
    all_old = f"{redis_namespace}:rl:all-old"
    await redis_client.zadd(all_old, {"ancient": now_us - 10_000 * 1_000_000})
    not_a_window = f"{redis_namespace}:rl:not-a-window"
    await redis_client.set(not_a_window, "x")

    check = await RedisRateLimitKeys(redis_client, redis_namespace, scan_count=2).trim(3600)

    assert check.checked == 4 and check.repaired == 2
    assert 0 < await redis_client.pttl(f"{redis_namespace}:rl:login:fresh") <= 60_000  # untouched
    assert await redis_client.zrange(straggler, 0, -1) == [b"recent"]
    assert 3_500_000 < await redis_client.pttl(straggler) <= 3_600_000
    assert not await redis_client.exists(all_old)
    assert await redis_client.get(not_a_window) == b"x"  # not the limiter's: left alone
    # The straggler still counts its recent entry for the limiter.
    decision = await limiter.hit("straggler", RateLimit(1, 60))
    assert not decision.allowed


async def test_in_process_limiter_keys_out_of_their_window_are_swept() -> None:
    now = [0.0]
    limiter = InProcessSlidingWindowLimiter(clock=lambda: now[0], sweep_interval_seconds=10_000)
    await limiter.hit("short", RateLimit(5, 10))
    await limiter.hit("long", RateLimit(5, 100))
    now[0] = 50.0
    check = await limiter.trim(3600)
    assert (check.checked, check.repaired, len(limiter)) == (2, 1, 1)
    assert (await limiter.hit("long", RateLimit(1, 100))).allowed is False  # still counted
