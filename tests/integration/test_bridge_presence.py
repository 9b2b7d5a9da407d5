"""Both `BridgePresence` adapters -- the Lua script on a real Redis and the in-process one -- run
the same table of call sequences (`tests.bridge_presence_cases`) and must give every call the
verdict the rule gives it; then the rate-limit windows they count in the same step.

The presence is judged on the caller's clock (`Sighting.at`), so the table moves time by passing
later datetimes. The windows run on Redis' server clock, and on an injected clock in process."""

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import pytest
import redis.asyncio as aioredis

from adapters.bridges.in_process_presence import InProcessBridgePresence
from adapters.bridges.redis_presence import RedisBridgePresence
from adapters.limiter.in_process import InProcessSlidingWindowLimiter
from adapters.redis_pipelined import PipelinedRedis
from application.ports.bridge_presence import BridgePresence, PresenceVerdict, Sighting
from application.ports.rate_limiter import RateLimit
from domain.bridge_presence import SecondTerminal
from tests.bridge_presence_cases import CASES, INTERVAL, T0, A, B, Call

ROOMY = RateLimit(limit=1_000, window_seconds=60)


class ManualClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis), "in_process"])
def backend(request: pytest.FixtureRequest) -> str | None:
    """The Redis URL, or None for the in-process adapter (resolved outside the event loop)."""
    if request.param == "in_process":
        return None
    request.getfixturevalue("redis_client")  # deletes this test's keys at the end
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture
async def presence(backend: str | None, redis_namespace: str) -> AsyncIterator[BridgePresence]:
    if backend is None:
        clock = ManualClock()
        yield InProcessBridgePresence(InProcessSlidingWindowLimiter(clock), clock)
        return
    connection = PipelinedRedis(backend)
    try:
        yield RedisBridgePresence(connection, redis_namespace)
    finally:
        await connection.close()


def sighting(call: Call) -> Sighting:
    return Sighting(ip=call.ip, at=call.at_time, sent_at=call.sent_time, figure=call.figure)


async def admit(
    presence: BridgePresence,
    bridge: uuid.UUID,
    call: Call,
    windows: Sequence[tuple[str, RateLimit]] = (),
) -> PresenceVerdict:
    return await presence.admit(bridge, sighting(call), windows, INTERVAL)


@pytest.mark.parametrize("calls", CASES.values(), ids=CASES.keys())
async def test_the_table_of_call_sequences(presence: BridgePresence, calls: list[Call]) -> None:
    bridge = uuid.uuid4()
    window = (f"bridge:{bridge}:calls", ROOMY)
    verdicts = [await admit(presence, bridge, call, [window]) for call in calls]

    assert [v.second_terminal for v in verdicts] == [call.flag for call in calls]
    assert [v.previous_ip for v in verdicts] == [None] + [call.ip for call in calls[:-1]]
    assert all([d.allowed for d in v.decisions] == [True] for v in verdicts)


async def test_bridges_are_judged_apart(presence: BridgePresence) -> None:
    one, other = uuid.uuid4(), uuid.uuid4()

    first = await admit(presence, one, Call(A, 0))
    elsewhere = await admit(presence, other, Call(B, 1))
    again = await admit(presence, one, Call(A, 2))

    assert (first.second_terminal, first.previous_ip) == (None, None)
    assert (elsewhere.second_terminal, elsewhere.previous_ip) == (None, None)
    assert (again.second_terminal, again.previous_ip) == (None, A)


async def test_a_call_refused_by_a_window_leaves_the_presence_as_it_was(presence: BridgePresence) -> None:
    bridge = uuid.uuid4()
    tight = (f"bridge:{bridge}:tight", RateLimit(limit=1, window_seconds=60))

    first = await admit(presence, bridge, Call(A, 0, sent=100, figure="1.0"), [tight])
    refused = await admit(presence, bridge, Call(B, 1, sent=500, figure="2.0"), [tight])
    # Judged against the first call: had the refused one been recorded, B would be the same
    # address (no flag), and its terminal clock would make this one go back.
    judged = await admit(presence, bridge, Call(B, 2, sent=101, figure="1.0"))

    assert first.decisions[0].allowed and first.second_terminal is None
    assert [d.allowed for d in refused.decisions] == [False]
    assert refused.decisions[0].retry_after > 0
    assert (refused.second_terminal, refused.previous_ip) == (None, None)
    assert judged.second_terminal is SecondTerminal.SECOND_ADDRESS
    assert judged.previous_ip == A


async def test_a_refusal_by_one_window_of_several_records_no_presence(presence: BridgePresence) -> None:
    bridge = uuid.uuid4()
    roomy = (f"bridge:{bridge}:roomy", ROOMY)
    tight = (f"bridge:{bridge}:tight", RateLimit(limit=1, window_seconds=60))
    await admit(presence, bridge, Call(A, 0), [roomy, tight])

    refused = await admit(presence, bridge, Call(B, 40), [roomy, tight])
    later = await admit(presence, bridge, Call(A, 41), [roomy])

    assert [d.allowed for d in refused.decisions] == [True, False]  # each window decides alone
    assert refused.decisions[0].remaining == ROOMY.limit - 2
    assert refused.second_terminal is None
    assert (later.second_terminal, later.previous_ip) == (None, A)  # B was never recorded
    assert later.decisions[0].remaining == ROOMY.limit - 3


async def test_windows_are_counted_per_key_across_calls(presence: BridgePresence) -> None:
    bridge = uuid.uuid4()
    per_bridge = (f"bridge:{bridge}:minute", RateLimit(limit=3, window_seconds=60))
    per_ip = (f"bridge-ip:{uuid.uuid4()}", RateLimit(limit=5, window_seconds=60))

    verdicts = [await admit(presence, bridge, Call(A, i), [per_bridge, per_ip]) for i in range(4)]
    other_key = await admit(presence, bridge, Call(A, 5), [per_ip])

    assert [[d.allowed for d in v.decisions] for v in verdicts] == [
        [True, True],
        [True, True],
        [True, True],
        [False, True],
    ]
    assert [v.decisions[0].remaining for v in verdicts] == [2, 1, 0, 0]
    assert [v.decisions[1].remaining for v in verdicts] == [4, 3, 2, 1]
    assert 0 < verdicts[3].decisions[0].retry_after <= 60
    assert [d.allowed for d in other_key.decisions] == [True]
    assert other_key.decisions[0].remaining == 0
    refused = await admit(presence, bridge, Call(A, 6), [per_ip])
    assert [d.allowed for d in refused.decisions] == [False]


async def test_duplicate_window_keys_are_refused(presence: BridgePresence) -> None:
    bridge = uuid.uuid4()
    key = f"bridge:{bridge}:calls"

    with pytest.raises(ValueError):
        await admit(presence, bridge, Call(A, 0), [(key, ROOMY), (key, RateLimit(1, 1))])
    # Nothing was counted or recorded: the next call is a first call under fresh windows.
    first = await admit(presence, bridge, Call(B, 1), [(key, RateLimit(limit=2, window_seconds=60))])
    assert (first.second_terminal, first.previous_ip) == (None, None)
    assert first.decisions[0].remaining == 1


# -- what only one adapter can show


async def test_in_process_presence_is_forgotten_after_its_ttl() -> None:
    clock = ManualClock()
    presence = InProcessBridgePresence(InProcessSlidingWindowLimiter(clock), clock)
    bridge = uuid.uuid4()
    await presence.admit(bridge, Sighting(A, T0), (), INTERVAL)

    clock.now += 119  # the presence lives max(60 s, 4 intervals) = 120 s of the worker's clock
    kept = await presence.admit(bridge, Sighting(B, T0 + timedelta(seconds=1)), (), INTERVAL)
    clock.now += 121
    forgotten = await presence.admit(bridge, Sighting(A, T0 + timedelta(seconds=2)), (), INTERVAL)

    assert (kept.second_terminal, kept.previous_ip) == (SecondTerminal.SECOND_ADDRESS, A)
    assert (forgotten.second_terminal, forgotten.previous_ip) == (None, None)


@pytest.mark.redis
async def test_the_redis_presence_hash_expires_a_few_intervals_after_the_last_call(
    redis_url: str, redis_namespace: str, redis_client: aioredis.Redis
) -> None:
    connection = PipelinedRedis(redis_url)
    try:
        presence = RedisBridgePresence(connection, redis_namespace)
        bridge = uuid.uuid4()
        await presence.admit(bridge, Sighting(A, T0), (), timedelta(seconds=5))
        short = await redis_client.pttl(f"{redis_namespace}:bridge-presence:{bridge}")
        await presence.admit(bridge, Sighting(A, T0), (), timedelta(minutes=5))
        long = await redis_client.pttl(f"{redis_namespace}:bridge-presence:{bridge}")
    finally:
        await connection.close()

    assert 59_000 < short <= 60_000  # never less than a minute
    assert 1_199_000 < long <= 1_200_000  # four intervals
