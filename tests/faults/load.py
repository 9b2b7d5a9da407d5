"""Steady request loops for the fault suite: every answer is kept with the phase it arrived in,
so a test can say what was answered before, during and after a fault."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class Outcome:
    phase: str
    status: int  # 0: no answer (the client gave up, or the connection broke)
    retry_after: str | None
    content_type: str
    seconds: float
    sent_at: float
    error: str = ""


@dataclass
class Phases:
    now: str = "before"
    started: dict[str, float] = field(default_factory=dict)

    def enter(self, name: str) -> None:
        self.now = name
        self.started[name] = time.monotonic()


def fresh_connections(base: str, origin: str, timeout: float) -> httpx.AsyncClient:
    """A new TCP connection per request, so requests spread over every granian worker."""
    return httpx.AsyncClient(
        base_url=base,
        headers={"origin": origin},
        timeout=timeout,
        limits=httpx.Limits(max_keepalive_connections=0),
    )


async def record(
    phases: Phases, send: Callable[[], Awaitable[httpx.Response]], into: list[Outcome]
) -> Outcome:
    phase, sent = phases.now, time.monotonic()
    try:
        r = await send()
    except httpx.HTTPError as error:
        outcome = Outcome(phase, 0, None, "", time.monotonic() - sent, sent, repr(error))
    else:
        outcome = Outcome(
            phase,
            r.status_code,
            r.headers.get("retry-after"),
            r.headers.get("content-type", ""),
            time.monotonic() - sent,
            sent,
        )
    into.append(outcome)
    return outcome


async def loop_until(
    stop: asyncio.Event,
    phases: Phases,
    send: Callable[[], Awaitable[httpx.Response]],
    into: list[Outcome],
    pause: float = 0.02,
) -> None:
    while not stop.is_set():
        await record(phases, send, into)
        await asyncio.sleep(pause)


def statuses(outcomes: list[Outcome], phase: str | None = None) -> dict[int, int]:
    counts: dict[int, int] = {}
    for o in outcomes:
        if phase is None or o.phase == phase:
            counts[o.status] = counts.get(o.status, 0) + 1
    return counts
