"""The admin panel (/api/admin/v1/...) is invisible outside BULWARK_ADMIN_ALLOWED_NETWORKS: to any
other client every admin path answers exactly what an unknown route answers -- status, every
header, body -- with or without CORS, with any method, with a spoofed X-Forwarded-For, and in no
measurably different time. Inside the allowlist the panel works, also behind a trusted proxy.

Requests go in as raw ASGI messages so that the comparison sees the exact header list (names,
values, order) and the client address is whatever the test says."""

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from adapters.storage.tables import organisations
from entrypoints.app import create_asgi, create_litestar
from entrypoints.http.asgi_types import ASGIApp
from entrypoints.settings import Settings
from tests.e2e.conftest import FRONTEND, Service
from tests.e2e.identity_helpers import FAST_ARGON2, service_with
from tests.e2e.test_orgs_and_roles import create_org, make_platform_admin, new_user

UNKNOWN = "/api/v1/no-such-route-xyz"
ADMIN_NETWORK = "192.0.2.0/24"
INSIDE = "192.0.2.5"  # in the allowlist
OUTSIDE = "203.0.113.7"  # not in it, and not a proxy
PROXY = "10.0.0.5"  # a trusted proxy: its X-Forwarded-For names the client
REQUEST_ID = "fixed-request-id"  # echoed back, so even x-request-id can be compared


@dataclass(frozen=True)
class Answer:
    status: int | None
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def comparable(self) -> tuple[int | None, list[tuple[bytes, bytes]], bytes]:
        # Only Date may differ between two answers (the app sets none today; a server may).
        return self.status, [(n.lower(), v) for n, v in self.headers if n.lower() != b"date"], self.body


async def exchange(
    app: ASGIApp,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    peer: str = OUTSIDE,
    root_path: str = "",
) -> Answer:
    """One bodiless request as a server would hand it over (HTTP/1.1: no Content-Length, no body)."""
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    raw_headers = [(b"host", b"bulwark.test"), (b"x-request-id", REQUEST_ID.encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await app(
        {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "https",
            "path": root_path + path,
            "raw_path": (root_path + path).encode(),
            "query_string": b"",
            "root_path": root_path,
            "client": (peer, 50000),
            "server": ("bulwark.test", 443),
            "headers": raw_headers,
        },
        receive,
        send,
    )
    starts = [m for m in sent if m["type"] == "http.response.start"]
    return Answer(
        starts[0]["status"] if starts else None,
        list(starts[0].get("headers", [])) if starts else [],
        b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"),
    )


@dataclass
class Panel:
    service: Service
    app: ASGIApp
    org_id: str
    root_headers: dict[str, str]  # a platform administrator's admin session cookie


@pytest.fixture
async def panel(service_settings: Settings, redis_namespace: str) -> AsyncIterator[Panel]:
    async with service_with(
        service_settings,
        redis_namespace,
        **FAST_ARGON2,
        admin_allowed_networks=(ADMIN_NETWORK,),
        trusted_proxies=("10.0.0.0/8",),
    ) as service:
        root = await make_platform_admin(service, await new_user(service, "root"), ip=INSIDE)
        org_id, _ = await create_org(service, await new_user(service, "owner"))
        yield Panel(service, create_asgi(service.container), org_id, root.headers)


def admin_paths(org_id: str) -> list[str]:
    return [
        f"/api/admin/v1/orgs/{org_id}/disable",  # exists (POST)
        f"/api/admin/v1/orgs/{uuid.uuid4()}/enable",  # exists (POST), unknown org
        "/api/admin/v1/schema",  # exists (GET)
        "/api/admin/v1/orgs",
        "/api/admin/v1",
        "/api/admin/v1/",
        "/api/admin/v1/no-such-admin-thing",
        # What Litestar's router normalises onto an admin route must be hidden too.
        "//api/admin/v1/schema",
        "/api/admin/v1//schema/",
        f"/api//admin/v1/orgs/{org_id}/disable/",
    ]


def header_sets(panel: Panel) -> dict[str, dict[str, str]]:
    return {
        "bare": {},
        "cors": {"origin": FRONTEND},
        "cors-preflight": {
            "origin": FRONTEND,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization",
        },
        "foreign-origin": {"origin": "https://evil.example"},
        "admin-token": {**panel.root_headers, "origin": FRONTEND},
        # From an untrusted peer, X-Forwarded-For is the client's own claim: it changes nothing.
        "spoofed-xff": {**panel.root_headers, "origin": FRONTEND, "x-forwarded-for": INSIDE},
        "spoofed-xff-loopback": {"x-forwarded-for": "127.0.0.1", "origin": FRONTEND},
    }


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


async def assert_hidden(
    panel: Panel, app: ASGIApp | None = None, peer: str = OUTSIDE, extra: dict[str, str] | None = None
) -> int:
    """Every admin path x method x header set answers byte for byte as UNKNOWN does."""
    app = app or panel.app
    compared = 0
    for path in admin_paths(panel.org_id):
        for method in METHODS:
            for name, headers in header_sets(panel).items():
                headers = {**headers, **(extra or {})}
                hidden = await exchange(app, method, path, headers, peer)
                unknown = await exchange(app, method, UNKNOWN, headers, peer)
                assert hidden.comparable() == unknown.comparable(), (method, path, name)
                assert not any(n.lower() == b"allow" for n, _ in hidden.headers), (method, path, name)
                compared += 1
    return compared


async def test_outside_the_allowlist_every_admin_answer_is_the_unknown_route_answer(panel: Panel) -> None:
    compared = await assert_hidden(panel)
    assert compared == 10 * 7 * 7
    # The comparison is not vacuous: the unknown-route answers it matched are these.
    assert (await exchange(panel.app, "GET", UNKNOWN)).status == 404
    assert (await exchange(panel.app, "GET", UNKNOWN, {"origin": FRONTEND})).status == 404
    assert (await exchange(panel.app, "POST", UNKNOWN, {"origin": "https://evil.example"})).status == 403
    preflight = {"origin": FRONTEND, "access-control-request-method": "POST"}
    assert (await exchange(panel.app, "OPTIONS", UNKNOWN, preflight)).status == 204
    # ... and none of those POSTs with a platform administrator's token disabled the org.
    async with panel.service.container.engine.connect() as conn:
        query = select(organisations.c.status).where(organisations.c.id == uuid.UUID(panel.org_id))
        assert (await conn.execute(query)).scalar() == "active"


async def test_behind_a_trusted_proxy_the_forwarded_client_decides(panel: Panel) -> None:
    # The proxy forwards a client outside the allowlist: hidden, exactly as above.
    await assert_hidden(panel, peer=PROXY, extra={"x-forwarded-for": OUTSIDE})
    # A client-supplied entry left of the proxy's own is not the client (right-most untrusted wins).
    await assert_hidden(panel, peer=PROXY, extra={"x-forwarded-for": f"{INSIDE}, {OUTSIDE}"})


async def test_mounted_under_a_root_path_admin_paths_are_hidden_too(panel: Panel) -> None:
    for path in ("/api/admin/v1/schema", f"/api/admin/v1/orgs/{panel.org_id}/disable"):
        for method in ("GET", "POST"):
            hidden = await exchange(panel.app, method, path, {"origin": FRONTEND}, root_path="/mounted")
            unknown = await exchange(panel.app, method, UNKNOWN, {"origin": FRONTEND}, root_path="/mounted")
            assert hidden.comparable() == unknown.comparable(), (method, path)
    allowed = await exchange(panel.app, "GET", "/api/admin/v1/schema", peer=INSIDE, root_path="/mounted")
    assert allowed.status == 200


async def test_inside_the_allowlist_the_panel_answers(panel: Panel) -> None:
    """The control for the tests above: the same requests from inside get the real routes' answers
    (which is what a missing gate would show everyone)."""
    disable = f"/api/admin/v1/orgs/{panel.org_id}/disable"
    wrong_method = await exchange(panel.app, "GET", disable, peer=INSIDE)
    assert wrong_method.status == 405 and any(n == b"allow" for n, _ in wrong_method.headers)
    schema = await exchange(panel.app, "GET", "/api/admin/v1/schema", peer=INSIDE)
    assert schema.status == 200
    anonymous = await exchange(panel.app, "POST", disable, {"origin": FRONTEND}, peer=INSIDE)
    assert anonymous.status == 401

    r = await exchange(panel.app, "POST", disable, {**panel.root_headers, "origin": FRONTEND}, peer=INSIDE)
    assert r.status == 200, r.body
    # Behind the trusted proxy, the client it names is what counts.
    enable = f"/api/admin/v1/orgs/{panel.org_id}/enable"
    forwarded = {**panel.root_headers, "origin": FRONTEND, "x-forwarded-for": INSIDE}
    r = await exchange(panel.app, "POST", enable, forwarded, peer=PROXY)
    assert r.status == 200, r.body
    r = await exchange(
        panel.app, "GET", "/api/admin/v1/schema", {"x-forwarded-for": f"{OUTSIDE}, {INSIDE}"}, peer=PROXY
    )
    assert r.status == 200


async def test_the_admin_schema_is_served_to_the_allowlist_and_the_public_schema_omits_the_panel(
    panel: Panel,
) -> None:
    admin = await exchange(panel.app, "GET", "/api/admin/v1/schema", peer=INSIDE)
    assert admin.status == 200
    document = json.loads(admin.body)
    assert document["openapi"].startswith("3.1")
    assert {"/api/admin/v1/orgs/{org_id}/disable", "/api/admin/v1/orgs/{org_id}/enable"} <= set(
        document["paths"]
    )
    assert all(path.startswith("/api/admin/v1/") for path in document["paths"]), document["paths"].keys()

    for public_path in ("/schema", "/schema/openapi.json"):
        public = await exchange(panel.app, "GET", public_path, peer=INSIDE)
        assert public.status == 200
        text = public.body.decode()
        assert "/api/admin" not in text and "adminDisableOrg" not in text and "adminOpenApi" not in text
        assert "admin" not in {tag["name"] for tag in json.loads(text).get("tags", [])}


async def test_an_empty_allowlist_turns_the_panel_off_even_for_loopback(
    service_settings: Settings, redis_namespace: str
) -> None:
    async with service_with(service_settings, redis_namespace, admin_allowed_networks=()) as service:
        app = create_asgi(service.container)
        for peer in ("127.0.0.1", "::1", INSIDE):
            for method, path in (("GET", "/api/admin/v1/schema"), ("GET", "/api/admin/v1/orgs/x/disable")):
                hidden = await exchange(app, method, path, {"origin": FRONTEND}, peer=peer)
                unknown = await exchange(app, method, UNKNOWN, {"origin": FRONTEND}, peer=peer)
                assert hidden.comparable() == unknown.comparable(), (peer, path)


async def test_development_defaults_to_loopback(service: Service) -> None:
    app = create_asgi(service.container)
    for peer in ("127.0.0.1", "127.3.4.5", "::1", "::ffff:127.0.0.1"):
        assert (await exchange(app, "GET", "/api/admin/v1/schema", peer=peer)).status == 200, peer
    hidden = await exchange(app, "GET", "/api/admin/v1/schema", peer=OUTSIDE)
    assert hidden.comparable() == (await exchange(app, "GET", UNKNOWN, peer=OUTSIDE)).comparable()


async def test_the_router_guard_hides_the_panel_even_without_the_gate(panel: Panel) -> None:
    """Defence in depth: the bare Litestar app (no ASGI gate in front) still gives an admin
    handler's unknown-route 404 to a client outside the allowlist."""
    bare: Any = create_litestar(panel.service.container)
    for method, path in (
        ("GET", "/api/admin/v1/schema"),
        ("POST", f"/api/admin/v1/orgs/{panel.org_id}/disable"),
    ):
        hidden = await exchange(bare, method, path, panel.root_headers)
        unknown = await exchange(bare, method, UNKNOWN, panel.root_headers)
        assert hidden.comparable() == unknown.comparable() and hidden.status == 404, path
    assert (await exchange(bare, "GET", "/api/admin/v1/schema", peer=INSIDE)).status == 200


def median_ms(samples: list[int]) -> float:
    return statistics.median(samples) / 1e6


async def test_a_hidden_admin_path_takes_no_measurably_different_time_than_an_unknown_route(
    panel: Panel,
) -> None:
    """Timing rule: 200 samples of each request, interleaved (so load on the machine hits both
    alike), after a warm-up; the medians of a hidden admin request and of the same request to an
    unknown route must differ by less than max(20% of the unknown route's median, 0.3 ms). The
    hidden requests are the most expensive ones the panel would otherwise run: a platform
    administrator's POST that disables an org, also with a spoofed X-Forwarded-For."""
    disable = f"/api/admin/v1/orgs/{panel.org_id}/disable"
    headers = {**panel.root_headers, "origin": FRONTEND}
    spoofed = {**headers, "x-forwarded-for": INSIDE}
    cases = {
        "disable": ("POST", disable, headers),
        "disable-spoofed-xff": ("POST", disable, spoofed),
        "schema": ("GET", "/api/admin/v1/schema", headers),
        "no-such-admin-path": ("GET", "/api/admin/v1/no-such-admin-thing", headers),
    }
    for name, (method, path, sent) in cases.items():
        for _ in range(20):  # warm-up: first-call caches on both sides
            await exchange(panel.app, method, path, sent)
            await exchange(panel.app, method, UNKNOWN, sent)
        hidden: list[int] = []
        unknown: list[int] = []
        for i in range(200):
            order = (
                ((path, hidden), (UNKNOWN, unknown)) if i % 2 == 0 else ((UNKNOWN, unknown), (path, hidden))
            )
            for target, samples in order:
                started = time.perf_counter_ns()
                await exchange(panel.app, method, target, sent)
                samples.append(time.perf_counter_ns() - started)
            await asyncio.sleep(0)
        hidden_ms, unknown_ms = median_ms(hidden), median_ms(unknown)
        tolerance = max(0.2 * unknown_ms, 0.3)
        assert abs(hidden_ms - unknown_ms) < tolerance, (
            f"{name}: median {hidden_ms:.3f} ms hidden, {unknown_ms:.3f} ms unknown, "
            f"tolerance {tolerance:.3f} ms"
        )
