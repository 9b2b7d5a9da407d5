"""POST /api/bridge/v1/heartbeat is answered before routing by HeartbeatFastPath. These tests
hold it to the framework route: the same answers, success and failure alike; a body the route's
decoder refuses left to the route untouched; a heartbeat counted once whichever way it went
(its failure raised by the route, never run again); a browser's request left to the route's
CORS. Both backends."""

import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

import entrypoints.controllers.bridge_api as bridge_controller
from entrypoints.http.fast_path import precomputed_failure
from entrypoints.settings import Settings
from tests.bridge_simulator import Terminal
from tests.e2e.bridges.test_bridges import PinnedClock, create_bridge
from tests.e2e.conftest import FRONTEND, Service, start_service
from tests.e2e.fast_path_helpers import client_of
from tests.e2e.identity_helpers import FAST_ARGON2
from tests.e2e.test_orgs_and_roles import new_user

PATH = "/api/bridge/v1/heartbeat"
_PER_ANSWER = {"x-request-id"}


@pytest.fixture
async def service(service_settings: Settings, redis_namespace: str) -> AsyncIterator[Service]:
    # Room for the comparisons below, tight enough that a double count shows.
    settings = dataclasses.replace(service_settings, bridge_limit_per_key="6/60", **FAST_ARGON2)
    async for svc in start_service(settings, redis_namespace, clock=PinnedClock()):
        yield svc


@pytest.fixture
async def fast(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(service) as client:
        yield client


@pytest.fixture
async def reference(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """The same EA in front of the same container, every heartbeat through the framework."""
    async with client_of(service, heartbeat_fast_path=False) as client:
        yield client


@pytest.fixture
def route_calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every heartbeat the Litestar route handled: True where the fast path had run it already
    (the route's first step raises the failure the fast path left)."""
    seen: list[bool] = []
    original: Callable[..., Any] = bridge_controller.raise_precomputed_failure

    def counting(scope: Any) -> None:
        seen.append(precomputed_failure(scope) is not None)
        original(scope)

    monkeypatch.setattr(bridge_controller, "raise_precomputed_failure", counting)
    return seen


@pytest.fixture
def heartbeats_run(service: Service, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every run of the heartbeat use case, whichever path called it."""
    runs: list[int] = []
    use_case = service.container.bridges.heartbeat
    original = type(use_case).__call__

    async def counting(self: Any, *args: Any) -> Any:
        runs.append(1)
        return await original(self, *args)

    monkeypatch.setattr(type(use_case), "__call__", counting)
    return runs


def body(**changes: Any) -> dict[str, Any]:
    return {**Terminal().heartbeat(), **changes}


def ea_headers(key: str, **extra: str) -> dict[str, str]:
    return {"X-API-Key": key, "User-Agent": "MetaTrader 5", **extra}


def shape(response: httpx.Response) -> tuple[int, dict[str, str], Any]:
    headers = {name: value for name, value in response.headers.items() if name not in _PER_ANSWER}
    answer = response.json() if response.content else None
    if isinstance(answer, dict):
        answer.pop("request_id", None)
    return response.status_code, headers, answer


async def bound_bridge(service: Service, fast: httpx.AsyncClient) -> tuple[str, str]:
    """A bridge's key and id, its first hello done."""
    actor = await new_user(service)
    created = await create_bridge(service, actor)
    r = await fast.post("/api/bridge/v1/hello", json=Terminal().hello(), headers=ea_headers(created["key"]))
    assert r.status_code == 200, r.text
    return created["key"], created["bridge"]["id"]


async def test_a_heartbeat_skips_the_framework_and_answers_what_the_route_answers(
    service: Service,
    fast: httpx.AsyncClient,
    reference: httpx.AsyncClient,
    route_calls: list[bool],
    heartbeats_run: list[int],
) -> None:
    key, bridge_id = await bound_bridge(service, fast)
    quick = await fast.post(PATH, json=body(), headers=ea_headers(key))
    assert route_calls == [] and heartbeats_run == [1]  # answered without the framework
    slow = await reference.post(PATH, json=body(), headers=ea_headers(key))
    assert route_calls == [False] and heartbeats_run == [1, 1]
    assert quick.status_code == 200 and quick.json() == {"bridge_id": bridge_id, "status": "online"}
    assert shape(quick) == shape(slow)


async def test_every_failure_is_the_routes_answer_and_runs_once(
    service: Service,
    fast: httpx.AsyncClient,
    reference: httpx.AsyncClient,
    route_calls: list[bool],
    heartbeats_run: list[int],
) -> None:
    actor = await new_user(service)
    unbound = (await create_bridge(service, actor, "Fresh EA"))["key"]
    key, _ = await bound_bridge(service, fast)
    forged = key[:-4] + ("aaaa" if not key.endswith("aaaa") else "bbbb")
    cases = [
        ("a key nobody issued", ea_headers(forged), body()),
        ("no hello yet", ea_headers(unbound), body()),
    ]
    for what, headers, sent in cases:
        route_calls.clear()
        heartbeats_run.clear()
        quick = await fast.post(PATH, json=sent, headers=headers)
        # Ran once, by the fast path; the route raised its failure and ran nothing itself.
        assert heartbeats_run == [1] and route_calls == [True], what
        slow = await reference.post(PATH, json=sent, headers=headers)
        assert quick.status_code >= 400 and shape(quick) == shape(slow), what


async def test_bodies_the_decoder_refuses_go_to_the_route_untouched(
    service: Service,
    fast: httpx.AsyncClient,
    reference: httpx.AsyncClient,
    route_calls: list[bool],
    heartbeats_run: list[int],
) -> None:
    key, _ = await bound_bridge(service, fast)
    contents = [
        b"{not json",
        json.dumps(body(balance="10000")).encode(),  # a string for a number: strict decoding
        json.dumps(body(extra=1)).encode(),  # an unknown field
        json.dumps({k: v for k, v in body().items() if k != "equity"}).encode(),
        json.dumps(body(sent_at="2026-12-04T06:00:00")).encode(),  # a time without its zone
    ]
    for content in contents:
        route_calls.clear()
        quick = await fast.post(
            PATH, content=content, headers=ea_headers(key, **{"Content-Type": "application/json"})
        )
        assert route_calls == [False], content  # nothing ran before the route decoded it
        slow = await reference.post(
            PATH, content=content, headers=ea_headers(key, **{"Content-Type": "application/json"})
        )
        assert quick.status_code == 400 and shape(quick) == shape(slow), content
    assert heartbeats_run == []  # no body the route refuses ever reached the use case


async def test_a_heartbeat_is_counted_once_whichever_way_it_went(
    service: Service, fast: httpx.AsyncClient
) -> None:
    """The bridge's own limit is 6 a minute here (hello included): were a heartbeat the fast path
    handed to the route counted twice, the refusal would come early."""
    key, _ = await bound_bridge(service, fast)
    answers = [(await fast.post(PATH, json=body(), headers=ea_headers(key))).status_code for _ in range(6)]
    assert answers == [200] * 5 + [429]
    refused = await fast.post(PATH, json=body(), headers=ea_headers(key))
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["code"] == "rate_limited"


async def test_a_browsers_heartbeat_is_left_to_the_routes_cors(
    service: Service, fast: httpx.AsyncClient, reference: httpx.AsyncClient, route_calls: list[bool]
) -> None:
    key, _ = await bound_bridge(service, fast)
    headers = ea_headers(key, Origin=FRONTEND)
    quick = await fast.post(PATH, json=body(), headers=headers)
    assert route_calls == [False]
    slow = await reference.post(PATH, json=body(), headers=headers)
    assert quick.status_code == 200 and shape(quick) == shape(slow)
    assert quick.headers["access-control-allow-origin"] == FRONTEND


async def test_two_keys_or_a_blank_one_are_left_to_the_route(
    service: Service, fast: httpx.AsyncClient, route_calls: list[bool], heartbeats_run: list[int]
) -> None:
    key, _ = await bound_bridge(service, fast)
    blank = await fast.post(PATH, json=body(), headers=ea_headers(" "))
    doubled = await fast.post(
        PATH,
        json=body(),
        headers=httpx.Headers([("X-API-Key", key), ("X-API-Key", key), ("User-Agent", "MetaTrader 5")]),
    )
    assert route_calls == [False, False] and heartbeats_run == []
    for refused in (blank, doubled):
        assert refused.status_code == 401 and refused.json()["code"] == "invalid_api_key"
