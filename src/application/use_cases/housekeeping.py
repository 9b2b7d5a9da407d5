"""Housekeeping: dead sessions and spent one-time tokens deleted once their retention is over,
and the rate limiter's keys checked. Run once by `bulwark jobs run` (from a timer), or every so
often by each worker when BULWARK_HOUSEKEEPING_INTERVAL_SECONDS is set. Safe to run from several
processes at once: each batch deletes rows no other batch holds."""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from application.ports.clock import Clock
from application.ports.housekeeping import ExpiredRows, LimiterKeyCheck, RateLimitKeys


@dataclass(frozen=True)
class HousekeepingPolicy:
    retention: timedelta  # how long a dead session or spent token is kept (support, investigation)
    batch_size: int  # rows per delete transaction
    longest_limit_window_seconds: float  # no rate-limit key needs to outlive this
    pause_seconds: float = 0.05  # between batches: other transactions get the tables in between


@dataclass(frozen=True)
class HousekeepingReport:
    sessions_deleted: int
    tokens_deleted: int
    limiter: LimiterKeyCheck


@dataclass
class RunHousekeeping:
    rows: ExpiredRows
    limiter_keys: RateLimitKeys
    clock: Clock
    policy: HousekeepingPolicy

    async def __call__(self) -> HousekeepingReport:
        cutoff = self.clock.now() - self.policy.retention
        sessions = await self._in_batches(self.rows.purge_dead_sessions, cutoff)
        tokens = await self._in_batches(self.rows.purge_spent_tokens, cutoff)
        limiter = await self.limiter_keys.trim(self.policy.longest_limit_window_seconds)
        return HousekeepingReport(sessions, tokens, limiter)

    async def _in_batches(self, purge: Callable[[datetime, int], Awaitable[int]], cutoff: datetime) -> int:
        total = 0
        while True:
            deleted = await purge(cutoff, self.policy.batch_size)
            total += deleted
            if deleted < self.policy.batch_size:
                return total
            await asyncio.sleep(self.policy.pause_seconds)
