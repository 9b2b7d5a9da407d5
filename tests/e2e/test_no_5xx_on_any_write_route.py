"""Every write route of the app, generated from its own routes and request bodies, gets a body
nested 5,000 deep, NUL and control characters in each string field, and integers past 64 bits:
none may answer 5xx, on either backend. A route added later is covered without editing this."""

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from litestar.routes import HTTPRoute

from entrypoints.app import create_litestar
from entrypoints.settings import Settings
from tests.e2e.conftest import Service
from tests.e2e.identity_helpers import FAST_ARGON2, browser, login, service_with
from tests.e2e.test_orgs_and_roles import (
    ADMIN_IP,
    Actor,
    create_group,
    create_org,
    create_role,
    join,
    new_user,
    switch,
)

PATH_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
DEEP = "[" * 5000 + "]" * 5000
HOSTILE_STRINGS = ("\x00", "a\x00b", "\x07\x1b[31m", "\u202e", "\x7f")
HUGE_INTS = (2**64, -(2**64) - 1, 10**30)


@pytest.fixture
async def service(service_settings: Settings, redis_namespace: str) -> AsyncIterator[Service]:
    # Limits high enough that no answer here is a 429 standing in front of the code under test.
    roomy = {
        name: "100000/3600"
        for name in (
            "login_limit_per_ip",
            "login_limit_per_account",
            "register_limit_per_ip",
            "mail_limit_per_ip",
            "mail_limit_per_address",
            "mfa_limit_per_user",
            "mfa_limit_per_ip",
        )
    }
    async with service_with(service_settings, redis_namespace, **FAST_ARGON2, **roomy) as svc:
        yield svc


def write_routes(service: Service) -> list[tuple[str, str, Any]]:
    found = []
    for route in create_litestar(service.container).routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            data = getattr(handler, "parsed_data_field", None)
            for method in sorted(handler.http_methods & {"POST", "PUT", "PATCH", "DELETE"}):
                found.append((method, route.path, data.annotation if data is not None else None))
    return sorted(found, key=lambda c: (c[1], c[0]))


def hostile_bodies(body_type: Any) -> list[Any]:
    """For each field in turn: each hostile string (also inside lists), each huge integer; the
    other fields plausible."""
    if body_type is None or not isinstance(body_type, type) or not issubclass(body_type, msgspec.Struct):
        return [{"x": "\x00"}, [2**64]]
    fields = msgspec.structs.fields(body_type)
    plain = {f.name: "x" for f in fields}
    bodies: list[Any] = []
    for field in fields:
        for value in (*HOSTILE_STRINGS, *HUGE_INTS, [*HOSTILE_STRINGS], [*HUGE_INTS]):
            bodies.append({**plain, field.name: value})
    return bodies


async def relogin(service: Service, actor: Actor) -> Actor:
    session = await login(service.client, actor.email)
    return Actor(actor.email, actor.user_id, session.access, session.refresh)


async def test_no_write_route_answers_5xx_to_hostile_bodies(service: Service) -> None:
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice)
    bob = await join(service, alice, await new_user(service, "bob"))
    ids = {
        "org_id": org_id,
        "user_id": bob.user_id,
        "role_id": await create_role(service, alice, "Readers", ["orders:read"]),
        "group_id": await create_group(service, alice, "Desk"),
    }
    routes = write_routes(service)
    assert len(routes) >= 25, routes
    failures = []
    async with browser(service, ip=ADMIN_IP) as panel:
        for method, template, body_type in routes:
            # Admin routes answer only their allowlist (loopback here); to anyone else, 404.
            client = panel if template.startswith("/api/admin/") else service.client
            path = PATH_PARAM.sub(lambda m: ids.get(m.group(1), str(uuid.uuid4())), template)
            attempts: list[tuple[str, bytes]] = [("deep", DEEP.encode())]
            attempts += [("body", msgspec.json.encode(body)) for body in hostile_bodies(body_type)]
            for what, content in attempts:
                for _ in range(2):  # a route before this one may have ended alice's session (logout)
                    r = await client.request(
                        method,
                        path,
                        content=content,
                        headers={**alice.headers, "content-type": "application/json"},
                    )
                    if r.status_code != 401 or r.json().get("code") != "invalid_token":
                        break
                    alice = await switch(service, await relogin(service, alice), org_id)
                assert r.status_code != 429, (method, template, r.text)
                if r.status_code >= 500:
                    failures.append((method, template, what, content[:80], r.status_code, r.text[:200]))
                elif what == "deep" and body_type is not None:
                    # Admin routes behind the admin session refuse the bearer first (never parse).
                    guarded = template.startswith("/api/admin/") and not template.endswith("/login")
                    assert r.status_code == (401 if guarded else 400), (
                        method,
                        template,
                        r.status_code,
                        r.text,
                    )
    assert not failures, failures
