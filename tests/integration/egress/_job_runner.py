"""Runs the egress job once in a process of its own, and kills that process (no cleanup, no
rollback: `os._exit`) at the Nth step when asked, like a SIGKILL between two steps.

Usage: python -m tests.integration.egress._job_runner DB_URL KIND STATE_DIR NOW CRASH_AT
KIND is `static` (a fixed pool of 5) or `cloud` (a growing provider, state in STATE_DIR).
CRASH_AT 0 runs to the end. Prints `crashed-never STEPS` when it finished."""

import asyncio
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from uuid import UUID

from adapters.storage.database import create_engine
from adapters.storage.unit_of_work import SqlUnitOfWorkFactory
from application.egress_job import RunEgressJob
from application.egress_ledger import EgressLedger, EgressPorts
from application.ports.egress_provider import EgressProvider
from tests.egress_doubles import FixedPool, GrowingProvider, InMemoryGateway
from tests.integration.egress.seed import pool
from tests.integration.egress.world import PLANS, POLICY
from tests.unit.fakes import FakeClock, FakeMailer

KILLED = 137


class RecordingGateway(InMemoryGateway):
    """Confirms every detach and writes it down (the test checks nothing became available
    without its holder's detach confirmed)."""

    def __init__(self, log: Path) -> None:
        super().__init__()
        self.log = log

    async def detach(self, user_id: UUID, address: str, unbound_at: datetime) -> bool:
        confirmed = await super().detach(user_id, address, unbound_at)
        with self.log.open("a") as out:
            out.write(json.dumps([str(user_id), address]) + "\n")
        return confirmed


def provider_for(kind: str, state_dir: Path) -> EgressProvider:
    if kind == "static":
        return FixedPool(pool(5))
    return GrowingProvider(quota=5, state_file=state_dir / "provider.json")


async def main(url: str, kind: str, state_dir: Path, now: datetime, crash_at: int) -> None:
    steps = 0

    async def hook(step: str) -> None:
        nonlocal steps
        steps += 1
        if steps == crash_at:
            sys.stdout.write(f"killed at {steps} ({step})\n")
            sys.stdout.flush()
            os._exit(KILLED)

    engine = create_engine(url, pool_size=2)
    ports = EgressPorts(
        uow=SqlUnitOfWorkFactory(engine),
        clock=FakeClock(now),
        provider=provider_for(kind, state_dir),
        gateway=RecordingGateway(state_dir / "detached.jsonl"),
        mailer=FakeMailer(),
        plans=PLANS,
        policy=POLICY,
        after_step=hook,
    )
    await RunEgressJob(ports, EgressLedger(ports))()
    await engine.dispose()
    sys.stdout.write(f"crashed-never {steps}\n")


if __name__ == "__main__":
    url, kind, state_dir, now, crash_at = sys.argv[1:6]
    asyncio.run(main(url, kind, Path(state_dir), datetime.fromisoformat(now), int(crash_at)))
