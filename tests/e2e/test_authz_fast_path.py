"""POST /api/v1/authz/check from other services (bearer, no Origin) is answered before routing
by AuthzCheckFastPath. These tests hold it to the framework route's behaviour: the same answers,
every refusal given by the framework route itself, revocation and role changes seen at once, and
the HTTP ground rules still applied around it. Both backends."""

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

import entrypoints.controllers.authorization as authorization_controller
from entrypoints.app import create_asgi
from entrypoints.settings import Settings
from tests.e2e.conftest import FRONTEND, Service
from tests.e2e.identity_helpers import FAST_ARGON2, service_with
from tests.e2e.test_orgs_and_roles import (
    TRADER_ROLE,
    Actor,
    admin_post,
    create_org,
    delete,
    join,
    make_platform_admin,
    new_user,
)

PATH = "/api/v1/authz/check"


@pytest.fixture
async def service(service_settings: Settings, redis_namespace: str) -> AsyncIterator[Service]:
    async with service_with(service_settings, redis_namespace, **FAST_ARGON2) as svc:
        yield svc


def client_of(service: Service, *, authz_fast_path: bool) -> httpx.AsyncClient:
    """A caller like the platform's other services: no Origin header."""
    app = create_asgi(service.container, authz_fast_path=authz_fast_path)
    transport = httpx.ASGITransport(app=app, client=("10.0.0.9", 40000))
    return httpx.AsyncClient(transport=transport, base_url="https://bulwark.test")


@pytest.fixture
async def services_client(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(service, authz_fast_path=True) as client:
        yield client


@pytest.fixture
async def reference_client(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """The same caller in front of the same container, with every check through the framework."""
    async with client_of(service, authz_fast_path=False) as client:
        yield client


@pytest.fixture
def framework_answers(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every 200 answer the Litestar route computed (the fast path computes its own)."""
    seen: list[bytes] = []
    original: Callable[..., Any] = authorization_controller.authz_answer

    async def counting(*args: Any) -> bytes:
        body: bytes = await original(*args)
        seen.append(body)
        return body

    monkeypatch.setattr(authorization_controller, "authz_answer", counting)
    return seen


async def desk(service: Service) -> tuple[str, Actor, Actor]:
    """A new org, its administrator, and a member holding Trader (which may create orders)."""
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice)
    trader = await join(service, alice, await new_user(service, "trader"), role_ids=[TRADER_ROLE])
    return org_id, alice, trader


async def trader_of(service: Service) -> Actor:
    return (await desk(service))[2]


ORDER = b'{"permission": "orders:create"}'


def as_json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


async def post(
    client: httpx.AsyncClient, body: bytes, headers: dict[str, str], origin: bool = False
) -> httpx.Response:
    extra = {"origin": FRONTEND} if origin else {}
    return await client.post(
        PATH, content=body, headers={"content-type": "application/json", **headers, **extra}
    )


async def test_plain_checks_skip_the_framework_and_answer_exactly_what_it_answers(
    service: Service, services_client: httpx.AsyncClient, framework_answers: list[bytes]
) -> None:
    trader = await trader_of(service)
    bodies = [
        {"permission": "orders:create"},
        {"permission": "risk_limits:update"},
        {"permission": "orders:launch"},
        {"permissions": ["orders:create", "orders:read"]},
        {"permissions": ["orders:create", "billing:read"]},
    ]
    expected = [
        {"allowed": True},
        {"allowed": False},
        {"allowed": False},
        {"allowed": True, "results": {"orders:create": True, "orders:read": True}},
        {"allowed": False, "results": {"orders:create": True, "billing:read": False}},
    ]
    for body, answer in zip(bodies, expected, strict=True):
        fast = await post(services_client, as_json(body), trader.headers)
        assert fast.status_code == 200 and fast.json() == answer, (body, fast.text)
        assert not framework_answers, "a service's plain check went through the framework route"
        framework = await post(service.client, as_json(body), trader.headers, origin=True)
        assert framework.status_code == 200 and framework.json() == answer, (body, framework.text)
        assert len(framework_answers) == 1
        framework_answers.clear()
        assert fast.headers["content-type"] == framework.headers["content-type"] == "application/json"
        # The ground rules around it still apply: request id, security headers, no caching.
        assert fast.headers["x-request-id"] and fast.headers["x-content-type-options"] == "nosniff"
        assert fast.headers["cache-control"] == "no-store"
        assert "access-control-allow-origin" not in fast.headers


@pytest.mark.parametrize(
    ("body", "headers_of"),
    [
        (as_json({}), "trader"),
        (as_json({"permission": "orders:read", "permissions": ["orders:read"]}), "trader"),
        (as_json({"permissions": []}), "trader"),
        (as_json({"permissions": ["orders:read"] * 101}), "trader"),
        (as_json({"permission": "orders:read", "extra": 1}), "trader"),
        (as_json({"permission": 7}), "trader"),
        (b'{"permission": "orders:read"', "trader"),
        (as_json({"permission": "orders:read", "padding": "x" * 70_000}), "trader"),
        (as_json({"permission": "orders:read"}), "none"),
        (as_json({"permission": "orders:read"}), "garbage"),
        (as_json({"permission": "orders:read"}), "basic"),
    ],
    ids=[
        "empty",
        "both-forms",
        "empty-batch",
        "batch-too-long",
        "unknown-field",
        "wrong-type",
        "malformed-json",
        "oversized",
        "no-token",
        "garbage-token",
        "basic-scheme",
    ],
)
async def test_every_refusal_is_the_framework_routes_own_answer(
    service: Service,
    services_client: httpx.AsyncClient,
    reference_client: httpx.AsyncClient,
    settings_max_body: int,
    body: bytes,
    headers_of: str,
) -> None:
    trader = await trader_of(service)
    headers = {
        "trader": trader.headers,
        "none": {},
        "garbage": {"authorization": "Bearer not.a.token"},
        "basic": {"authorization": "Basic dXNlcjpwYXNz"},
    }[headers_of]
    if len(body) > 60_000:
        assert len(body) > settings_max_body
    fast = await post(services_client, body, headers)
    framework = await post(reference_client, body, headers)
    assert 400 <= fast.status_code < 500, fast.text
    assert fast.status_code == framework.status_code
    assert fast.json() == framework.json()
    assert fast.headers["content-type"] == framework.headers["content-type"] == "application/problem+json"


@pytest.fixture
def settings_max_body(service: Service) -> int:
    return service.container.settings.max_body_bytes


async def test_a_logout_and_a_removed_role_take_effect_on_the_very_next_fast_check(
    service: Service, services_client: httpx.AsyncClient
) -> None:
    org_id, alice, trader = await desk(service)
    assert (await post(services_client, ORDER, trader.headers)).json() == {"allowed": True}

    r = await delete(service, alice, f"/api/v1/orgs/{org_id}/members/{trader.user_id}/roles/{TRADER_ROLE}")
    assert r.status_code == 204, r.text
    assert (await post(services_client, ORDER, trader.headers)).json() == {"allowed": False}

    r = await service.client.post("/api/v1/auth/logout", headers=trader.headers)
    assert r.status_code == 204, r.text
    refused = await post(services_client, ORDER, trader.headers)
    assert refused.status_code == 401 and refused.json()["code"] == "invalid_token", refused.text


async def test_the_ground_rules_in_front_of_it_still_refuse(
    service: Service, services_client: httpx.AsyncClient
) -> None:
    trader = await trader_of(service)
    r = await services_client.post(
        PATH, content=b"permission=orders:read", headers={**trader.headers, "content-type": "text/plain"}
    )
    assert r.status_code == 415, r.text
    r = await services_client.post(
        PATH,
        content=as_json({"permission": "orders:read"}),
        headers={**trader.headers, "content-type": "application/json", "sec-fetch-site": "cross-site"},
    )
    assert r.status_code == 403 and r.json()["code"] == "origin_not_allowed", r.text


async def test_a_disabled_org_refuses_the_very_next_fast_check(
    service: Service, services_client: httpx.AsyncClient
) -> None:
    org_id, _, trader = await desk(service)
    assert (await post(services_client, ORDER, trader.headers)).json() == {"allowed": True}
    root = await make_platform_admin(service, await new_user(service, "root"))
    r = await admin_post(service, f"/orgs/{org_id}/disable", root)
    assert r.status_code == 200, r.text
    refused = await post(services_client, ORDER, trader.headers)
    assert refused.status_code == 401, refused.text


# -- what httpx cannot send: raw ASGI messages, to the fast path and to the reference app ---------


async def drive(
    app: Any, headers: list[tuple[bytes, bytes]], messages: list[dict[str, Any]], **scope: Any
) -> Any:
    """Status and body of one request given as raw ASGI messages (then a disconnect, forever)."""
    pending = list(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(
        {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "https",
            "path": PATH,
            "raw_path": PATH.encode(),
            "query_string": b"",
            "root_path": "",
            "client": ("10.0.0.9", 40000),
            "server": ("bulwark.test", 443),
            "headers": headers,
            **scope,
        },
        receive,
        send,
    )
    starts = [m for m in sent if m["type"] == "http.response.start"]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return (starts[0]["status"] if starts else None), body


def chunks_of(body: bytes, sizes: list[int]) -> list[dict[str, Any]]:
    out, at = [], 0
    for size in sizes:
        out.append({"type": "http.request", "body": body[at : at + size], "more_body": True})
        at += size
    out.append({"type": "http.request", "body": body[at:], "more_body": False})
    return out


async def test_raw_requests_get_the_reference_apps_answers(
    service: Service, framework_answers: list[bytes], settings_max_body: int
) -> None:
    trader = await trader_of(service)
    fast_app = create_asgi(service.container)
    reference_app = create_asgi(service.container, authz_fast_path=False)
    bearer_header = (b"authorization", f"Bearer {trader.access}".encode())
    json_type = (b"content-type", b"application/json")
    host = (b"host", b"bulwark.test")
    body = as_json({"permissions": ["orders:create", "billing:read"]})
    # Valid JSON, just too long (whitespace): the limit, not the shape, must refuse it.
    big = b'{"permission": "orders:read"' + b" " * settings_max_body + b"}"
    cases: dict[str, tuple[list[tuple[bytes, bytes]], list[dict[str, Any]], dict[str, Any]]] = {
        "in-chunks": ([host, bearer_header, json_type], chunks_of(body, [1, 0, 7, 0, 5]), {}),
        "oversized-in-chunks": ([host, bearer_header, json_type], chunks_of(big, [4096] * 3), {}),
        "disconnect-mid-body": (
            [host, bearer_header, json_type],
            [{"type": "http.request", "body": body[:9], "more_body": True}, {"type": "http.disconnect"}],
            {},
        ),
        "two-authorizations": (
            [host, bearer_header, (b"authorization", b"Bearer other"), json_type],
            chunks_of(body, []),
            {},
        ),
        "announced-too-long": (
            [host, bearer_header, json_type, (b"content-length", b"%d" % (settings_max_body + 1))],
            chunks_of(body, []),
            {},
        ),
        "bad-content-length": (
            [host, bearer_header, json_type, (b"content-length", b"abc")],
            chunks_of(body, []),
            {},
        ),
        "bad-host": ([(b"host", b"evil.example/x y"), bearer_header, json_type], chunks_of(body, []), {}),
        "root-path": ([host, bearer_header, json_type], chunks_of(body, []), {"root_path": "/api"}),
    }
    # The fast path answers a chunked body itself; the rest it leaves to the route, whose answers
    # they then are (two Authorization headers: the route takes the first, as it always has).
    computed_by_route = {"in-chunks": 1, "two-authorizations": 2}
    for name, (headers, messages, scope) in cases.items():
        framework_answers.clear()
        fast = await drive(fast_app, headers, messages, **scope)
        reference = await drive(reference_app, headers, messages, **scope)
        assert fast == reference, (name, fast, reference)
        assert len(framework_answers) == computed_by_route.get(name, 0), name
        if name in computed_by_route:
            assert fast[0] == 200 and json.loads(fast[1])["allowed"] is False, (name, fast)
        else:
            assert fast[0] != 200, (name, fast)
