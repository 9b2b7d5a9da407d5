"""Bad input answers a clear 4xx and changes nothing, never a 500, on both backends: bodies nested
deeper than the decoder recurses, cursors past 64 bits, control characters in stored text, and
email addresses that would be look-alikes of another account."""

from collections.abc import AsyncIterator

import httpx
import pytest

from entrypoints.settings import Settings
from tests.e2e.conftest import Service
from tests.e2e.identity_helpers import FAST_ARGON2, register, service_with, unique_email
from tests.e2e.test_orgs_and_roles import create_org, new_user

DEEP_ARRAY = "[" * 5000 + "]" * 5000
DEEP_OBJECT = '{"a":' * 5000 + "1" + "}" * 5000


@pytest.fixture
async def service(service_settings: Settings, redis_namespace: str) -> AsyncIterator[Service]:
    async with service_with(service_settings, redis_namespace, **FAST_ARGON2) as svc:
        yield svc


def refused(r: httpx.Response, code: str | None = None, field: str | None = None) -> None:
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    if code is not None:
        assert r.json()["code"] == code, r.text
    if field is not None:
        assert field in r.text, r.text


async def test_bodies_nested_five_thousand_deep_are_refused_400(service: Service) -> None:
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice)
    json = {"content-type": "application/json"}
    for path, headers in (
        ("/api/v1/auth/login", json),
        ("/api/v1/auth/register", json),
        ("/api/v1/orgs", {**json, **alice.headers}),
        (f"/api/v1/orgs/{org_id}/roles", {**json, **alice.headers}),
        ("/api/v1/authz/check", {**json, **alice.headers}),
    ):
        for body in (DEEP_ARRAY, DEEP_OBJECT):
            refused(await service.client.post(path, content=body, headers=headers))
    # The service's own callers (no Origin) reach the authz fast path: the same answer there.
    bare = {k: v for k, v in service.client.headers.items() if k != "origin"}
    r = await service.client.post(
        "/api/v1/authz/check", content=DEEP_ARRAY, headers={**bare, **json, **alice.headers}
    )
    refused(r)


async def test_an_audit_cursor_past_64_bits_or_not_ascii_digits_is_refused(service: Service) -> None:
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice)
    for cursor in ("99999999999999999999999", "²", "-1", "1e9"):
        r = await service.client.get(
            f"/api/v1/orgs/{org_id}/audit", params={"cursor": cursor}, headers=alice.headers
        )
        refused(r, field="cursor")


async def test_control_characters_in_stored_text_are_refused_and_store_nothing(service: Service) -> None:
    r = await register(service.client, f"nul\x00{unique_email()}")
    refused(r, "invalid_email")
    r = await register(service.client, unique_email(), name="Eve\x00l")
    refused(r, field="display_name")
    alice = await new_user(service, "alice")
    org_id, alice = await create_org(service, alice)
    base = f"/api/v1/orgs/{org_id}"
    for path, body in (
        ("/api/v1/orgs", {"name": "Desk\x00"}),
        (f"{base}/groups", {"name": "Gr\x00oup"}),
        (f"{base}/groups", {"name": "Group", "description": "bell\x07"}),
        (f"{base}/roles", {"name": "Ro\x1ble", "permissions": []}),
        (f"{base}/roles", {"name": "Reader \u202eevil", "permissions": []}),
        (f"{base}/invitations", {"email": "a\x00b@example.com"}),
    ):
        refused(await service.client.post(path, json=body, headers=alice.headers))
    groups = (await service.client.get(f"{base}/groups", headers=alice.headers)).json()["groups"]
    roles = (await service.client.get(f"{base}/roles", headers=alice.headers)).json()["roles"]
    assert groups == [] and all(role["system"] for role in roles)


async def test_look_alike_email_addresses_are_refused(service: Service) -> None:
    for address in (
        "\uff46\uff55\uff4c\uff4c@example.com",  # fullwidth "full": NFKC would change it
        "st\u0435ve@example.com",  # a Cyrillic ie among Latin letters
        "tab\there@example.com",
    ):
        refused(await register(service.client, address), "invalid_email")
    # Case and composition never make a second account: the same address, differently written.
    first = await register(service.client, "Zoë@Example.com")
    assert first.status_code == 202, first.text
    again = await register(service.client, "zoe\u0308@example.com")
    assert again.status_code == 202, again.text  # answered as for any existing address
    mail = service.container.mailer.messages  # type: ignore[attr-defined]
    assert {m.to for m in mail if "zo" in m.to} == {"zoë@example.com"}
