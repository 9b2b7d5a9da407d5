"""POST /api/v1/auth/refresh is run before routing by RefreshFastPath. These tests hold it to the
framework route: the same 200 answers (CORS included), every failure answered by the route and
the refresh run only once, anything unusual left to the route untouched, and the HTTP ground
rules still applied around it. Both backends."""

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

import entrypoints.controllers.auth as auth_controller
from entrypoints.app import create_asgi
from entrypoints.settings import Settings
from tests.e2e.conftest import FRONTEND, Service
from tests.e2e.fast_path_helpers import call_mounted, client_of
from tests.e2e.identity_helpers import (
    COOKIE,
    FAST_ARGON2,
    audit_rows,
    login,
    register_verified,
    service_with,
    set_user_status,
    with_cookie,
)

PATH = "/api/v1/auth/refresh"
# Headers whose values differ between any two answers by design.
_PER_ANSWER = {"x-request-id", "set-cookie"}


@pytest.fixture
async def service(service_settings: Settings, redis_namespace: str) -> AsyncIterator[Service]:
    # No grace period: a second use of a rotated token is reuse at once. The tests log in often.
    async with service_with(
        service_settings,
        redis_namespace,
        refresh_grace_seconds=0,
        login_limit_per_ip="1000/60",
        login_limit_per_account="1000/60",
        **FAST_ARGON2,
    ) as svc:
        yield svc


@pytest.fixture
async def fast(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(service, refresh_fast_path=True) as client:
        yield client


@pytest.fixture
async def reference(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """The same browser in front of the same container, every refresh through the framework."""
    async with client_of(service, refresh_fast_path=False) as client:
        yield client


@pytest.fixture
def route_refreshes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every refresh request the Litestar route handled (its first step looks for a failure the
    fast path left): True where the fast path had run the refresh already."""
    seen: list[bool] = []
    original: Callable[..., Any] = auth_controller.precomputed_failure

    def counting(scope: Any) -> Any:
        failure = original(scope)
        seen.append(failure is not None)
        return failure

    monkeypatch.setattr(auth_controller, "precomputed_failure", counting)
    return seen


async def sessions(service: Service, count: int) -> tuple[str, list[str]]:
    """A verified user's email and the refresh tokens of `count` fresh sessions."""
    email = await register_verified(service)
    return email, [(await login(service.client, email)).refresh for _ in range(count)]


def browser_headers(token: str, **extra: str) -> dict[str, str]:
    return {"origin": FRONTEND, **with_cookie(token), **extra}


def shape(response: httpx.Response) -> tuple[int, dict[str, str], Any]:
    """What two answers to equivalent requests must share: status, headers (names, and values
    except the per-answer ones), and the body without its fresh access token."""
    headers = {name: value for name, value in response.headers.items() if name not in _PER_ANSWER}
    body = response.json() if response.content else None
    if isinstance(body, dict):
        body.pop("access_token", None)
        body.pop("request_id", None)
    return response.status_code, headers, body


def cookie_attributes(response: httpx.Response) -> list[str]:
    return [header.split(";", 1)[1] for header in response.headers.get_list("set-cookie")]


async def test_a_plain_refresh_skips_the_framework_and_answers_what_it_answers(
    service: Service,
    fast: httpx.AsyncClient,
    reference: httpx.AsyncClient,
    route_refreshes: list[bool],
) -> None:
    _, (mine, theirs) = await sessions(service, 2)
    for variant in ({}, {"user-agent": "Tab/1.0"}):
        answered = await fast.post(PATH, headers=browser_headers(mine, **variant))
        expected = await reference.post(PATH, headers=browser_headers(theirs, **variant))
        assert answered.status_code == 200, answered.text
        assert shape(answered) == shape(expected)
        assert answered.headers["access-control-allow-origin"] == FRONTEND
        assert cookie_attributes(answered) == cookie_attributes(expected)
        mine, theirs = answered.cookies[COOKIE], expected.cookies[COOKIE]
        assert answered.json()["access_token"] != expected.json()["access_token"]
    assert route_refreshes == [False, False]  # the reference's two; none of the fast path's
    me = await fast.get("/api/v1/me", headers={"authorization": f"Bearer {answered.json()['access_token']}"})
    assert me.status_code == 200, me.text
    # The rotated cookie works, and the one it replaced is now reuse.
    assert (await fast.post(PATH, headers=browser_headers(mine))).status_code == 200


async def test_without_origin_it_answers_without_cors_headers_like_the_route(
    service: Service, fast: httpx.AsyncClient, reference: httpx.AsyncClient, route_refreshes: list[bool]
) -> None:
    _, (mine, theirs) = await sessions(service, 2)
    referer = {"referer": f"{FRONTEND}/dashboard"}  # these clients send no Origin of their own
    answered = await fast.post(PATH, headers={**with_cookie(mine), **referer})
    expected = await reference.post(PATH, headers={**with_cookie(theirs), **referer})
    assert answered.status_code == 200, answered.text
    assert shape(answered) == shape(expected)
    assert "access-control-allow-origin" not in answered.headers
    assert route_refreshes == [False]


async def test_a_failed_refresh_is_answered_by_the_route_and_runs_once(
    service: Service, fast: httpx.AsyncClient, reference: httpx.AsyncClient, route_refreshes: list[bool]
) -> None:
    _, (mine, theirs) = await sessions(service, 2)
    # An unknown token.
    answered = await fast.post(PATH, headers=browser_headers("A" * 43))
    expected = await reference.post(PATH, headers=browser_headers("B" * 43))
    assert answered.status_code == 401 and answered.json()["code"] == "invalid_refresh_token"
    assert shape(answered) == shape(expected)
    # A rotated token presented again: reuse, the session revoked -- and reported as reuse, which
    # a second run of the refresh would not do (it would find the session already revoked).
    rotated_mine = (await fast.post(PATH, headers=browser_headers(mine))).cookies[COOKIE]
    rotated_theirs = (await reference.post(PATH, headers=browser_headers(theirs))).cookies[COOKIE]
    answered = await fast.post(PATH, headers=browser_headers(mine))
    expected = await reference.post(PATH, headers=browser_headers(theirs))
    assert answered.status_code == 401 and answered.json()["code"] == "refresh_token_reused", answered.text
    assert shape(answered) == shape(expected)
    assert answered.headers["access-control-allow-origin"] == FRONTEND  # CORS on errors too
    assert len(await audit_rows(service, "session.refresh_reuse")) == 2  # one per session
    for rotated in (rotated_mine, rotated_theirs):  # the whole session is gone
        assert (await fast.post(PATH, headers=browser_headers(rotated))).status_code == 401
    # Each of the fast path's failures reached the route as a failure, never as a second run.
    assert route_refreshes == [True, False, False, True, False, True, True]


async def test_a_suspended_account_cannot_refresh_through_it(
    service: Service, fast: httpx.AsyncClient, reference: httpx.AsyncClient
) -> None:
    email, (mine, theirs) = await sessions(service, 2)
    await set_user_status(service, email, "suspended")
    answered = await fast.post(PATH, headers=browser_headers(mine))
    expected = await reference.post(PATH, headers=browser_headers(theirs))
    assert answered.status_code == 401 and answered.json()["code"] == "invalid_refresh_token"
    assert shape(answered) == shape(expected)


def _cookie_variants(token: str) -> list[list[tuple[str, str | bytes]]]:
    """Cookie headers both paths read with `refresh_cookie_in`, to the same effect."""
    cookie = f"{COOKIE}={token}"
    return [
        [("cookie", f"{cookie}; \xa0{COOKIE}=stale".encode("latin-1"))],  # a lookalike name
        [("cookie", f"{cookie}; \x1f{COOKIE}=stale".encode("latin-1"))],
        [("cookie", f'{COOKIE}="{token}"')],  # quoted: not a token of ours
        [("cookie", f"{cookie}; {cookie}")],  # twice in one header
        [("cookie", f"{COOKIE}=stale; {cookie}")],  # twice: the last counts
        [("cookie", f"{cookie}; {COOKIE}=stale")],
        [("cookie", "theme=dark"), ("cookie", cookie)],  # split over two Cookie headers
        [("cookie", "theme=dark")],  # no refresh cookie
        [("cookie", f"{COOKIE}=")],  # an empty one
    ]


def _declined(token: str) -> list[list[tuple[str, str | bytes]]]:
    """Requests the fast path leaves to the framework."""
    cookie = f"{COOKIE}={token}"
    return [
        [("cookie", cookie), ("host", "bulwark.test"), ("host", "other.test")],  # two Hosts
        [("cookie", cookie), ("host", "bulwark test")],  # an odd Host
        [("cookie", cookie), ("origin", FRONTEND)],  # two Origins (with the one every case sends)
        [("cookie", "theme=dark")],  # no refresh cookie
    ]


async def test_cookie_variants_get_what_the_route_gives(
    service: Service, fast: httpx.AsyncClient, reference: httpx.AsyncClient
) -> None:
    cases = len(_cookie_variants("x"))
    _, tokens = await sessions(service, 2 * cases)
    for case in range(cases):
        mine, theirs = tokens[2 * case], tokens[2 * case + 1]
        answered = await fast.post(PATH, headers=[("origin", FRONTEND), *_cookie_variants(mine)[case]])
        expected = await reference.post(PATH, headers=[("origin", FRONTEND), *_cookie_variants(theirs)[case]])
        assert shape(answered) == shape(expected), (case, answered.text, expected.text)


async def test_requests_it_is_not_sure_about_go_to_the_route_untouched(
    service: Service, fast: httpx.AsyncClient, reference: httpx.AsyncClient, route_refreshes: list[bool]
) -> None:
    cases = len(_declined("x"))
    _, tokens = await sessions(service, 2 * cases)
    for case in range(cases):
        mine, theirs = tokens[2 * case], tokens[2 * case + 1]
        before = len(route_refreshes)
        answered = await fast.post(PATH, headers=[("origin", FRONTEND), *_declined(mine)[case]])
        expected = await reference.post(PATH, headers=[("origin", FRONTEND), *_declined(theirs)[case]])
        assert shape(answered) == shape(expected), (case, answered.text, expected.text)
        # Both went through the route, neither refreshed in advance (or the framework refused both
        # before its route, as it does an unusable Host).
        handled = route_refreshes[before:] == [False, False]
        assert handled or answered.status_code == expected.status_code == 400, case


async def test_a_tossed_lookalike_cookie_cannot_slip_its_session_under_a_victim(
    service: Service, fast: httpx.AsyncClient, reference: httpx.AsyncClient
) -> None:
    # An attacker who can set cookies on a sibling domain plants their own refresh token under a
    # name the browser's prefix rules do not protect but a lax parser reads as ours. The victim's
    # next refresh must still be the victim's session, whichever path answers it.
    victim, victims = await sessions(service, 2)
    _, attackers = await sessions(service, 2)
    for client, mine, planted in ((fast, victims[0], attackers[0]), (reference, victims[1], attackers[1])):
        header = f"{COOKIE}={mine}; \xa0{COOKIE}={planted}".encode("latin-1")
        answered = await client.post(PATH, headers=[("origin", FRONTEND), ("cookie", header)])
        assert answered.status_code == 200, answered.text
        assert answered.json()["user"]["email"] == victim


async def test_a_root_path_goes_to_the_route(service: Service, route_refreshes: list[bool]) -> None:
    _, (token,) = await sessions(service, 1)
    sent = await call_mounted(
        create_asgi(service.container),
        "POST",
        PATH,
        [(b"origin", FRONTEND.encode()), (b"cookie", f"{COOKIE}={token}".encode())],
    )
    assert sent and sent[0]["type"] == "http.response.start"
    assert len(route_refreshes) == 1


async def test_the_ground_rules_still_apply(service: Service, fast: httpx.AsyncClient) -> None:
    _, (token, other) = await sessions(service, 2)
    refused = await fast.post(PATH, headers=browser_headers(token, origin="https://evil.example"))
    assert refused.status_code == 403 and refused.json()["code"] == "origin_not_allowed"
    unsupported = await fast.post(
        PATH, content=b"x", headers=browser_headers(token, **{"content-type": "text/plain"})
    )
    assert unsupported.status_code == 415, unsupported.text
    # The refused requests changed nothing: the token still rotates once.
    answered = await fast.post(PATH, headers=browser_headers(token, **{"x-request-id": "trace-42"}))
    assert answered.status_code == 200, answered.text
    assert answered.headers["x-request-id"] == "trace-42"
    assert answered.headers["x-content-type-options"] == "nosniff"
    assert (
        await fast.post(PATH, headers={**with_cookie(other), "sec-fetch-site": "cross-site"})
    ).status_code == 403


async def test_a_slow_refresh_still_times_out(
    service_settings: Settings, redis_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service_with(service_settings, redis_namespace, **FAST_ARGON2) as svc:
        # The login runs under the normal limit (a loaded machine may take 0.2 s to hash); only
        # the chain built below, which serves the refresh, gets the short one.
        _, (token,) = await sessions(svc, 1)
        monkeypatch.setattr(
            svc.container,
            "settings",
            dataclasses.replace(svc.container.settings, request_timeout_seconds=0.2),
        )

        async def slow(*_: Any) -> None:
            await asyncio.sleep(5)

        monkeypatch.setattr(svc.container.identity, "refresh", slow)
        async with client_of(svc, refresh_fast_path=True) as client:
            answered = await client.post(PATH, headers=browser_headers(token))
    assert answered.status_code == 503 and answered.json()["code"] == "request_timeout", answered.text
