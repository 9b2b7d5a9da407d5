"""GET /api/v1/me is answered before routing by MeFastPath. These tests hold it to the framework
route: the same 200 answers (CORS included), every failure and every request it is not sure
about answered by the route, a revocation effective at once, and the HTTP ground rules still
applied around it. Both backends."""

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

import entrypoints.controllers.me as me_controller
from entrypoints.app import create_asgi
from entrypoints.settings import Settings
from tests.e2e.conftest import FRONTEND, Service
from tests.e2e.fast_path_helpers import call_mounted, client_of
from tests.e2e.identity_helpers import (
    FAST_ARGON2,
    bearer,
    login,
    register_verified,
    service_with,
)

PATH = "/api/v1/me"
_PER_ANSWER = {"x-request-id"}  # differs between any two answers by design


@pytest.fixture
async def service(service_settings: Settings, redis_namespace: str) -> AsyncIterator[Service]:
    async with service_with(service_settings, redis_namespace, **FAST_ARGON2) as svc:
        yield svc


@pytest.fixture
async def fast(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(service, me_fast_path=True) as client:
        yield client


@pytest.fixture
async def reference(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """The same caller in front of the same container, every /me through the framework."""
    async with client_of(service, me_fast_path=False) as client:
        yield client


@pytest.fixture
def route_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every /me the Litestar route answered (it builds its body with `me_body`)."""
    seen: list[int] = []
    original: Callable[..., Any] = me_controller.me_body

    async def counting(*args: Any) -> Any:
        seen.append(1)
        return await original(*args)

    monkeypatch.setattr(me_controller, "me_body", counting)
    return seen


def shape(response: httpx.Response) -> tuple[int, dict[str, str], Any]:
    headers = {name: value for name, value in response.headers.items() if name not in _PER_ANSWER}
    body = response.json() if response.content else None
    if isinstance(body, dict):
        body.pop("request_id", None)
    return response.status_code, headers, body


async def signed_in(service: Service) -> tuple[str, str]:
    email = await register_verified(service)
    return email, (await login(service.client, email)).access


async def test_a_plain_request_skips_the_framework_and_answers_what_it_answers(
    service: Service, fast: httpx.AsyncClient, reference: httpx.AsyncClient, route_calls: list[int]
) -> None:
    email, token = await signed_in(service)
    variants: list[dict[str, str]] = [
        {},  # a service or a same-origin page: no Origin
        {"origin": FRONTEND},
        {"origin": FRONTEND, "cookie": "theme=dark"},
        {"user-agent": "Tab/1.0", "accept": "application/json"},
    ]
    for extra in variants:
        answered = await fast.get(PATH, headers={**bearer(token), **extra})
        expected = await reference.get(PATH, headers={**bearer(token), **extra})
        assert answered.status_code == 200, answered.text
        assert shape(answered) == shape(expected), extra
        assert answered.json()["user"]["email"] == email
        if "origin" in extra:
            assert answered.headers["access-control-allow-origin"] == FRONTEND
    assert len(route_calls) == len(variants)  # the reference's; none of the fast path's


async def test_failures_are_answered_by_the_route(
    service: Service, fast: httpx.AsyncClient, reference: httpx.AsyncClient, route_calls: list[int]
) -> None:
    _, token = await signed_in(service)
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    cases: list[dict[str, str]] = [
        bearer(tampered),
        bearer("not-a-jwt"),
        {"authorization": f"Basic {token}"},
        {},  # no token
    ]
    for headers in cases:
        before = len(route_calls)
        answered = await fast.get(PATH, headers={"origin": FRONTEND, **headers})
        expected = await reference.get(PATH, headers={"origin": FRONTEND, **headers})
        assert answered.status_code == 401, answered.text
        assert shape(answered) == shape(expected), headers
        assert answered.headers["access-control-allow-origin"] == FRONTEND  # CORS on errors too
        # The route's handler is not reached for a bad token: its dependency refuses first.
        assert len(route_calls) == before


async def test_a_logout_stops_the_token_at_once(service: Service, fast: httpx.AsyncClient) -> None:
    email = await register_verified(service)
    session = await login(service.client, email)
    assert (await fast.get(PATH, headers=session.headers)).status_code == 200  # now cached in memory
    logout = await fast.post("/api/v1/auth/logout", headers={"origin": FRONTEND, **session.headers})
    assert logout.status_code == 204, logout.text
    refused = await fast.get(PATH, headers=session.headers)
    assert refused.status_code == 401 and refused.json()["code"] == "invalid_token", refused.text


def _declined(token: str) -> list[list[tuple[str, str]]]:
    """Requests the fast path leaves to the framework."""
    auth = ("authorization", f"Bearer {token}")
    return [
        [auth, ("authorization", f"Bearer {token}")],  # two Authorization headers
        [auth, ("host", "bulwark.test"), ("host", "other.test")],  # two Hosts
        [auth, ("host", "bulwark test")],  # an odd Host
        [auth, ("origin", FRONTEND), ("origin", FRONTEND)],  # two Origins
    ]


async def test_requests_it_is_not_sure_about_go_to_the_route(
    service: Service, fast: httpx.AsyncClient, reference: httpx.AsyncClient, route_calls: list[int]
) -> None:
    _, token = await signed_in(service)
    for case, headers in enumerate(_declined(token)):
        before = len(route_calls)
        answered = await fast.get(PATH, headers=headers)
        expected = await reference.get(PATH, headers=headers)
        assert shape(answered) == shape(expected), (case, answered.text, expected.text)
        # Both reached the route, or the framework refused both before it (an unusable Host).
        assert len(route_calls) - before == 2 or answered.status_code == 400, case
    # A query string is the route's to judge as well.
    before = len(route_calls)
    answered = await fast.get(PATH, params={"fields": "user"}, headers=bearer(token))
    expected = await reference.get(PATH, params={"fields": "user"}, headers=bearer(token))
    assert shape(answered) == shape(expected)
    assert len(route_calls) - before == 2


async def test_a_root_path_goes_to_the_route(service: Service, route_calls: list[int]) -> None:
    _, token = await signed_in(service)
    sent = await call_mounted(
        create_asgi(service.container), "GET", PATH, [(b"authorization", f"Bearer {token}".encode())]
    )
    assert sent and sent[0]["type"] == "http.response.start"
    assert len(route_calls) == 1


async def test_the_ground_rules_still_apply(
    service: Service, fast: httpx.AsyncClient, reference: httpx.AsyncClient
) -> None:
    _, token = await signed_in(service)
    # A page of another origin: a GET changes nothing, so it is not refused, but the answer does
    # not let that page's script read it.
    foreign = {**bearer(token), "origin": "https://evil.example"}
    answered, expected = await fast.get(PATH, headers=foreign), await reference.get(PATH, headers=foreign)
    assert shape(answered) == shape(expected)
    assert "access-control-allow-origin" not in answered.headers
    answered = await fast.get(PATH, headers={**bearer(token), "x-request-id": "trace-42"})
    assert answered.status_code == 200, answered.text
    assert answered.headers["x-request-id"] == "trace-42"
    assert answered.headers["x-content-type-options"] == "nosniff"


async def test_a_slow_profile_still_times_out(
    service_settings: Settings, redis_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service_with(
        service_settings, redis_namespace, request_timeout_seconds=1.0, **FAST_ARGON2
    ) as svc:
        # Signing in must itself fit the limit, even on a loaded machine: 1 s, not less.
        _, token = await signed_in(svc)

        async def slow(*_: Any) -> None:
            await asyncio.sleep(5)

        monkeypatch.setattr(svc.container.identity, "profile", slow)
        async with client_of(svc, me_fast_path=True) as client:
            answered = await client.get(PATH, headers=bearer(token))
    assert answered.status_code == 503 and answered.json()["code"] == "request_timeout", answered.text
