"""`GET /api/v1/authz/forward`, the decision a gateway asks for: by bearer token or bridge key,
with or without a permission. Both backends (the nginx example is tested in front of it in
tests/e2e/test_forward_auth_nginx.py)."""

import httpx

from tests.e2e.conftest import Service
from tests.e2e.identity_helpers import NO_BODY
from tests.e2e.test_orgs_and_roles import create_org, join, new_user

PATH = "/api/v1/authz/forward"


async def ask(service: Service, **headers: str) -> httpx.Response:
    sent = {k.replace("_", "-"): v for k, v in headers.items()}
    return await service.client.get(PATH, headers={"x-original-uri": "/positions", **sent})


async def test_a_user_is_named_and_a_missing_permission_refused(service: Service) -> None:
    admin = await new_user(service, "admin")
    _, admin = await create_org(service, admin)
    member = await join(service, admin, await new_user(service, "member"))
    r = await ask(service, authorization=admin.headers["authorization"])
    assert r.status_code == 200, r.text
    assert r.headers["x-bulwark-user"] == admin.user_id and r.headers["x-bulwark-org"] == admin.org_id
    assert "x-bulwark-bridge" not in r.headers
    r = await ask(
        service, authorization=member.headers["authorization"], x_bulwark_permission="orders:create"
    )
    assert r.status_code == 403 and r.json()["code"] == "permission_denied"
    r = await ask(service, authorization=admin.headers["authorization"], x_bulwark_permission="orders:create")
    assert r.status_code == 200
    r = await ask(service, authorization=admin.headers["authorization"], x_bulwark_permission="orders:fly")
    assert r.status_code == 400


async def test_a_bridge_is_named_but_holds_no_permission(service: Service) -> None:
    actor = await new_user(service)
    created = await service.client.post(
        f"/api/v1/orgs/{actor.org_id}/bridges", json={"name": "EA"}, headers=actor.headers
    )
    key = created.json()["key"]
    r = await ask(service, x_api_key=key)
    assert r.status_code == 200 and r.headers["x-bulwark-bridge"] == created.json()["bridge"]["id"]
    assert r.headers["x-bulwark-org"] == actor.org_id and "x-bulwark-user" not in r.headers
    assert (await ask(service, x_api_key=key, x_bulwark_permission="positions:read")).status_code == 403


async def test_nothing_wrong_or_both_is_refused(service: Service) -> None:
    actor = await new_user(service)
    key = (
        await service.client.post(
            f"/api/v1/orgs/{actor.org_id}/bridges", json={"name": "EA"}, headers=actor.headers
        )
    ).json()["key"]
    assert (await ask(service)).status_code == 401
    assert (await ask(service, authorization="Bearer x.y.z")).status_code == 401
    assert (await ask(service, authorization="Basic abc")).status_code == 401
    assert (await ask(service, x_api_key="bwk_" + "a" * 26 + "_" + "b" * 52)).status_code == 401
    both = await ask(service, authorization=actor.headers["authorization"], x_api_key=key)
    assert both.status_code == 401 and both.json()["code"] == "ambiguous_credentials"
    r = await service.client.post("/api/v1/auth/logout", headers={**actor.headers, **NO_BODY})
    assert r.status_code in (200, 204)
    assert (await ask(service, authorization=actor.headers["authorization"])).status_code == 401
