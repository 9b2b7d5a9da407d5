"""The HTTP ground rules of issue 2, through the outermost ASGI callable: health, OpenAPI, the one
problem+json error shape, body limits, content types, security headers, request ids, CORS, the
origin check against cross-site writes, and the request timeout."""

import asyncio
import dataclasses
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.storage import migrations
from entrypoints.http.asgi_types import Message, Receive, Scope, Send
from entrypoints.middleware.content_type import JsonContentTypeMiddleware
from entrypoints.middleware.request_context import RequestContextMiddleware
from entrypoints.middleware.security_headers import SecurityHeadersMiddleware
from entrypoints.middleware.timeout import TimeoutMiddleware
from entrypoints.settings import Settings
from tests.e2e.conftest import FRONTEND, Service, make_settings, start_service

LOGIN = "/api/v1/auth/login"
PROBLEM = "application/problem+json"
SMALL_LIMIT = 1024


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == PROBLEM
    body: dict[str, Any] = response.json()
    for key in ("type", "title", "status", "detail", "code"):
        assert key in body, body
    assert body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    if code is not None:
        assert body["code"] == code, body
    return body


def login_body(tag: str) -> dict[str, str]:
    # A distinct account per call keeps the per-account login limit out of the way.
    return {"email": f"{tag}@example.com", "password": "not the password at all"}


def without_origin(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Request:
    request = client.build_request(method, url, **kwargs)
    del request.headers["origin"]
    return request


# -- local fixtures -------------------------------------------------------------------------------


@pytest.fixture
def migrated_settings(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path, max_body_bytes=SMALL_LIMIT)
    migrations.upgrade(settings.effective_database_url)
    return settings


@pytest.fixture
def embedded_settings(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path)
    migrations.upgrade(settings.effective_database_url)  # sync: alembic runs its own event loop
    return settings


@pytest.fixture
async def embedded_service(embedded_settings: Settings, redis_namespace: str) -> AsyncIterator[Service]:
    """Shadows conftest's fixture of the same name, which runs the migrations inside the running
    event loop (alembic's env.py calls asyncio.run) and so cannot start."""
    async for svc in start_service(embedded_settings, redis_namespace):
        yield svc


@pytest.fixture
async def small_body_service(migrated_settings: Settings, redis_namespace: str) -> AsyncIterator[Service]:
    async for svc in start_service(migrated_settings, redis_namespace):
        yield svc


# -- health ---------------------------------------------------------------------------------------


async def test_liveness_and_readiness_answer_200_when_dependencies_are_up(service: Service) -> None:
    live = await service.client.get("/healthz/live")
    assert live.status_code == 200 and live.json()["status"] == "ok"
    ready = await service.client.get("/healthz/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["database"] == "ok"


async def test_readiness_is_503_naming_redis_when_redis_does_not_answer(
    migrated_settings: Settings, redis_namespace: str
) -> None:
    settings = dataclasses.replace(migrated_settings, redis_url="redis://127.0.0.1:1/0")
    started = time.monotonic()
    async for svc in start_service(settings, redis_namespace):
        startup = time.monotonic() - started
        # Start-up must not hang on a dead Redis (the revocation store gives up after ~5 s).
        assert startup < 8, f"start-up took {startup:.1f}s"
        live = await svc.client.get("/healthz/live")
        assert live.status_code == 200  # liveness touches nothing
        ready = await svc.client.get("/healthz/ready")
        body = assert_problem(ready, 503)
        assert "redis" in body["detail"].lower()
        assert "database" not in body["detail"].lower()


# -- OpenAPI --------------------------------------------------------------------------------------


async def test_schema_is_openapi_31_with_operation_ids_and_typed_bodies(service: Service) -> None:
    response = await service.client.get("/schema")
    assert response.status_code == 200
    assert "json" in response.headers["content-type"]
    doc = response.json()
    assert doc["openapi"].startswith("3.1")
    operation_ids: list[str] = []
    body_operations: set[str] = set()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            assert op.get("operationId"), f"{method.upper()} {path} has no operationId"
            operation_ids.append(op["operationId"])
            if "requestBody" in op:
                body_operations.add(op["operationId"])
                assert op["requestBody"]["content"]["application/json"]["schema"], (method, path)
            successes = {code: r for code, r in op["responses"].items() if code.startswith("2")}
            # A browser navigation's route (the broker callback) succeeds with a redirect.
            redirects = {code for code in op["responses"] if code.startswith("3")}
            assert successes or redirects, f"{method.upper()} {path} documents no success response"
            for code, success in successes.items():
                if code != "204":
                    assert success["content"]["application/json"]["schema"], (method, path, code)
    assert len(operation_ids) == len(set(operation_ids)), "operation ids must be unique"
    assert {"login", "register", "healthReady"} <= set(operation_ids)
    assert {"login", "register"} <= body_operations


# -- one error shape ------------------------------------------------------------------------------


async def test_malformed_json_is_400_problem(service: Service) -> None:
    response = await service.client.post(
        LOGIN, content=b'{"email": "a@example.com", ', headers={"content-type": "application/json"}
    )
    assert_problem(response, 400)


async def test_wrong_type_is_400_naming_the_field(service: Service) -> None:
    response = await service.client.post(LOGIN, json={"email": 42, "password": "x"})
    body = assert_problem(response, 400)
    assert body["field"] == "email" and "email" in body["detail"]


async def test_unknown_field_on_a_write_body_is_400_naming_the_field(service: Service) -> None:
    response = await service.client.post(LOGIN, json={**login_body("unknown"), "is_admin": True})
    body = assert_problem(response, 400)
    assert body["field"] == "is_admin" and "is_admin" in body["detail"]


async def test_missing_field_is_400_naming_the_field(service: Service) -> None:
    response = await service.client.post(LOGIN, json={"email": "missing@example.com"})
    body = assert_problem(response, 400)
    assert body["field"] == "password"


async def test_body_over_the_limit_is_413(small_body_service: Service) -> None:
    body = {"email": "big@example.com", "password": "x" * (SMALL_LIMIT * 2)}
    response = await small_body_service.client.post(LOGIN, json=body)
    assert_problem(response, 413)


async def test_chunked_body_over_the_limit_without_content_length_is_413(
    small_body_service: Service,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "big@example.com", "password": "'
        for _ in range(8):
            yield b"x" * 512
        yield b'"}'

    request = small_body_service.client.build_request(
        "POST", LOGIN, content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    assert_problem(await small_body_service.client.send(request), 413)


async def test_body_under_the_limit_is_not_413(small_body_service: Service) -> None:
    response = await small_body_service.client.post(LOGIN, json=login_body("small"))
    assert response.status_code == 401, response.text


async def test_unknown_route_is_404_problem(service: Service) -> None:
    assert_problem(await service.client.get("/api/v1/no-such-thing"), 404, "not_found")


async def test_wrong_method_is_405_problem_with_allow(service: Service) -> None:
    response = await service.client.get(LOGIN)
    assert_problem(response, 405, "method_not_allowed")
    assert "POST" in response.headers["allow"]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"email": "a@example.com", "password": "x"}', "text/plain"),
        (b"email=a%40example.com&password=x", "application/x-www-form-urlencoded"),
        (b'{"email": "a@example.com", "password": "x"}', None),
    ],
)
async def test_non_json_write_body_is_415(service: Service, content: bytes, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await service.client.post(LOGIN, content=content, headers=headers)
    assert_problem(response, 415, "unsupported_media_type")


async def test_body_of_undeclared_length_must_still_be_json() -> None:
    """HTTP/2 may stream a body with neither Content-Length nor Transfer-Encoding: the 415 rule
    must not depend on those headers."""
    reached: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append((await receive()).get("body", b""))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def run(content_type: bytes, body: bytes, version: str | None = None) -> list[Message]:
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": LOGIN,
            "headers": [(b"content-type", content_type)],
        }
        if version is not None:
            scope["http_version"] = version
        await JsonContentTypeMiddleware(app)(scope, receive, send)
        return sent

    for version in (None, "2", "3"):  # unknown (ASGI may leave it out), HTTP/2, HTTP/3
        reached.clear()
        sent = await run(b"text/plain", b'{"a": 1}', version)
        assert sent[0]["status"] == 415 and reached == []
        sent = await run(b"text/plain", b"", version)  # no body at all: nothing to refuse
        assert sent[0]["status"] == 200 and reached == [b""]
        sent = await run(b"application/json", b'{"a": 1}', version)  # the first chunk reaches the app
        assert sent[0]["status"] == 200 and reached[-1] == b'{"a": 1}'


async def test_http1_request_without_length_headers_has_no_body_to_wait_for() -> None:
    """RFC 9112 6.3: on HTTP/1.x, neither Content-Length nor Transfer-Encoding means no body, so
    the middleware passes the request on without reading (a refresh POST from a script)."""
    received: list[Message] = []

    async def receive() -> Message:
        received.append({"type": "http.request"})
        return {"type": "http.request", "body": b"", "more_body": False}

    async def app(scope: Scope, inner_receive: Receive, send: Send) -> None:
        assert inner_receive is receive  # the server's own, not a replay
        await send({"type": "http.response.start", "status": 204, "headers": []})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    for version in ("1", "1.0", "1.1"):  # granian says "1" for HTTP/1.0
        scope = {"type": "http", "http_version": version, "method": "POST", "path": LOGIN, "headers": []}
        await JsonContentTypeMiddleware(app)(scope, receive, send)
    assert [m["status"] for m in sent] == [204, 204, 204] and received == []


# -- security headers -----------------------------------------------------------------------------


def assert_security_headers(response: httpx.Response) -> None:
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff", response
    assert headers["referrer-policy"] == "no-referrer", response
    assert headers["x-frame-options"] == "DENY", response
    assert "frame-ancestors 'none'" in headers["content-security-policy"], response


async def test_security_headers_on_success_and_every_kind_of_error(embedded_service: Service) -> None:
    client = embedded_service.client
    responses = {
        200: await client.get("/healthz/live"),
        404: await client.get("/nope"),
        415: await client.post(LOGIN, content=b"x", headers={"content-type": "text/plain"}),
        403: await client.post(LOGIN, json=login_body("hdr"), headers={"origin": "https://evil.example"}),
        401: await client.post(LOGIN, json=login_body("hdr")),
    }
    for status, response in responses.items():
        assert response.status_code == status, response.text
        assert_security_headers(response)
    assert "strict-transport-security" not in responses[200].headers  # development: no HSTS


async def test_api_responses_are_never_cached(embedded_service: Service) -> None:
    client = embedded_service.client
    for response in (
        await client.post(LOGIN, json=login_body("cache")),
        await client.get("/api/v1/me"),
        await client.post(LOGIN, content=b"{", headers={"content-type": "application/json"}),
    ):
        assert response.headers["cache-control"] == "no-store", response


async def test_hsts_is_sent_in_production(tmp_path: Path, redis_namespace: str) -> None:
    # Production-like, without validate(): the service itself must add HSTS when env=production.
    settings = dataclasses.replace(
        Settings(data_dir=tmp_path / "data", frontend_url=FRONTEND), env="production"
    )
    settings.data_dir.mkdir(parents=True)
    async for svc in start_service(settings, redis_namespace):
        for response in (await svc.client.get("/healthz/live"), await svc.client.get("/nope")):
            hsts = response.headers["strict-transport-security"]
            assert "max-age=" in hsts and int(re.findall(r"max-age=(\d+)", hsts)[0]) >= 31536000


async def test_security_headers_middleware_adds_hsts_only_when_asked() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    for hsts in (True, False):
        sent: list[Message] = []

        async def send(message: Message, sent: list[Message] = sent) -> None:
            sent.append(message)

        async def receive() -> Message:
            return {"type": "http.request", "body": b""}

        scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
        await SecurityHeadersMiddleware(app, hsts=hsts)(scope, receive, send)
        names = {name for name, _ in sent[0]["headers"]}
        assert (b"strict-transport-security" in names) is hsts
        assert (b"cache-control", b"no-store") in sent[0]["headers"]


# -- request id -----------------------------------------------------------------------------------


async def test_request_id_is_generated_when_absent(embedded_service: Service) -> None:
    first = await embedded_service.client.get("/healthz/live")
    second = await embedded_service.client.get("/nope")
    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["x-request-id"])
    assert re.fullmatch(r"[0-9a-f]{32}", second.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_safe_request_id_is_echoed(embedded_service: Service) -> None:
    response = await embedded_service.client.get("/healthz/live", headers={"x-request-id": "trace-42.a:b_c"})
    assert response.headers["x-request-id"] == "trace-42.a:b_c"


@pytest.mark.parametrize("unsafe", ["has space", "x" * 129, 'quote"here', "semi;colon"])
async def test_unsafe_request_id_is_replaced(embedded_service: Service, unsafe: str) -> None:
    response = await embedded_service.client.get("/healthz/live", headers={"x-request-id": unsafe})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


@pytest.mark.parametrize("unsafe", [b"abc\n", b"abc\r\nx-injected: 1", b"abc\r", b"\nabc"])
async def test_request_id_with_line_breaks_is_replaced(unsafe: bytes) -> None:
    # httpx refuses to send these, but a raw client can: test the middleware with the raw scope.
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"x-request-id", unsafe)],
        "client": ("198.51.100.1", 1),
    }
    await RequestContextMiddleware(app, trusted_proxies=())(scope, receive, send)
    ids = [value for name, value in sent[0]["headers"] if name == b"x-request-id"]
    assert len(ids) == 1 and re.fullmatch(rb"[0-9a-f]{32}", ids[0]), ids


# -- CORS -----------------------------------------------------------------------------------------


async def test_cors_preflight_from_the_frontend_is_allowed_with_credentials(
    embedded_service: Service,
) -> None:
    response = await embedded_service.client.options(
        LOGIN,
        headers={"access-control-request-method": "POST", "access-control-request-headers": "content-type"},
    )
    assert response.status_code in (200, 204), response.text
    assert response.headers["access-control-allow-origin"] == FRONTEND
    assert response.headers["access-control-allow-credentials"] == "true"


@pytest.mark.parametrize("origin", ["https://evil.example", "https://app.example.com.evil.net", "null"])
async def test_cors_gives_other_origins_nothing(embedded_service: Service, origin: str) -> None:
    preflight = await embedded_service.client.options(
        LOGIN, headers={"origin": origin, "access-control-request-method": "POST"}
    )
    simple = await embedded_service.client.get("/healthz/live", headers={"origin": origin})
    assert preflight.status_code >= 400
    for response in (preflight, simple):
        # Without Access-Control-Allow-Origin the browser hides the response from that origin.
        assert "access-control-allow-origin" not in response.headers, response.headers
        assert "access-control-allow-credentials" not in response.headers, response.headers


# -- origin check on state-changing requests ------------------------------------------------------


async def test_write_from_the_allowed_origin_passes_the_origin_check(embedded_service: Service) -> None:
    response = await embedded_service.client.post(LOGIN, json=login_body("allowed"))
    assert_problem(response, 401, "invalid_credentials")


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.com.evil.net",
        "https://evil.example",
        "null",
        "http://app.example.com",  # scheme matters
        "https://app.example.com:8443",  # port matters
        "https://app.example.com/",  # exact match only
    ],
)
async def test_write_from_another_origin_is_403(embedded_service: Service, origin: str) -> None:
    response = await embedded_service.client.post(LOGIN, json=login_body("evil"), headers={"origin": origin})
    assert_problem(response, 403, "origin_not_allowed")


async def test_cross_site_fetch_metadata_is_403_even_with_the_allowed_origin(
    embedded_service: Service,
) -> None:
    response = await embedded_service.client.post(
        LOGIN, json=login_body("xsite"), headers={"sec-fetch-site": "cross-site"}
    )
    assert_problem(response, 403, "origin_not_allowed")


async def test_referer_from_the_allowed_origin_passes_without_origin(embedded_service: Service) -> None:
    client = embedded_service.client
    request = without_origin(
        client, "POST", LOGIN, json=login_body("referer"), headers={"referer": f"{FRONTEND}/login?next=/"}
    )
    assert_problem(await client.send(request), 401, "invalid_credentials")


@pytest.mark.parametrize(
    "referer", ["https://evil.example/page", "https://app.example.com.evil.net/login", "not a url"]
)
async def test_referer_from_another_origin_is_403(embedded_service: Service, referer: str) -> None:
    client = embedded_service.client
    request = without_origin(client, "POST", LOGIN, json=login_body("badref"), headers={"referer": referer})
    assert_problem(await client.send(request), 403, "origin_not_allowed")


async def test_write_with_neither_header_nor_bearer_is_403(embedded_service: Service) -> None:
    client = embedded_service.client
    request = without_origin(client, "POST", LOGIN, json=login_body("bare"))
    assert_problem(await client.send(request), 403, "origin_not_allowed")


async def test_write_with_neither_header_but_a_bearer_token_passes_the_origin_check(
    embedded_service: Service,
) -> None:
    client = embedded_service.client
    request = without_origin(client, "POST", "/api/v1/auth/logout", headers={"authorization": "Bearer x"})
    response = await client.send(request)
    assert response.status_code == 401, response.text  # rejected by authentication, not by origin


async def test_write_with_neither_header_and_only_a_cookie_is_403(embedded_service: Service) -> None:
    client = embedded_service.client
    request = without_origin(
        client, "POST", "/api/v1/auth/refresh", headers={"cookie": "bulwark_refresh=abc"}
    )
    assert_problem(await client.send(request), 403, "origin_not_allowed")


async def test_reads_are_not_subject_to_the_origin_check(embedded_service: Service) -> None:
    response = await embedded_service.client.get("/healthz/live", headers={"origin": "https://evil.example"})
    assert response.status_code == 200


# -- request timeout ------------------------------------------------------------------------------


async def test_a_slow_request_answers_503_request_timeout() -> None:
    async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(5)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})

    transport = httpx.ASGITransport(app=TimeoutMiddleware(slow_app, seconds=0.1))
    async with httpx.AsyncClient(transport=transport, base_url="https://bulwark.test") as client:
        started = time.monotonic()
        response = await client.get("/slow")
        assert time.monotonic() - started < 2
    assert_problem(response, 503, "request_timeout")
    assert response.headers["retry-after"]


async def test_a_request_stuck_past_the_timeout_answers_503_at_the_limit() -> None:
    """Work that is slow to honour cancellation (a lock wait in a driver thread) must not hold
    the 503 back: the limit bounds the whole request, and the work is still cancelled."""
    cancelled = asyncio.Event()

    async def stuck_app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            await asyncio.sleep(5)  # winds down slowly, well past the grace
            raise
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})

    middleware = TimeoutMiddleware(stuck_app, seconds=0.3, wind_down_seconds=0.2)
    transport = httpx.ASGITransport(app=middleware)
    async with httpx.AsyncClient(transport=transport, base_url="https://bulwark.test") as client:
        started = time.monotonic()
        response = await client.get("/stuck")
        took = time.monotonic() - started
    assert_problem(response, 503, "request_timeout")
    assert took < 1.5, took
    assert cancelled.is_set()


async def test_a_fast_request_is_untouched_by_the_timeout() -> None:
    async def fast_app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    transport = httpx.ASGITransport(app=TimeoutMiddleware(fast_app, seconds=1))
    async with httpx.AsyncClient(transport=transport, base_url="https://bulwark.test") as client:
        response = await client.get("/fast")
    assert response.status_code == 200 and response.text == "ok"
