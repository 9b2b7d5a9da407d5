"""The simulator itself answers in Hetzner's documented shapes (what the adapter tests lean on)."""

import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.hetzner_simulator import HetznerSimulator

TOKEN = "hc-sim-token"
CREATE = {
    "name": "a",
    "type": "ipv4",
    "assignee_type": "server",
    "datacenter": "fsn1-dc14",
    "auto_delete": False,
}


@pytest.fixture
async def api() -> AsyncIterator[tuple[HetznerSimulator, httpx.AsyncClient]]:
    async with HetznerSimulator(token=TOKEN) as sim:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=sim.base_url, headers=headers) as client:
            yield sim, client


async def test_every_answer_carries_the_rate_limit_headers_and_errors_their_documented_body(
    api: tuple[HetznerSimulator, httpx.AsyncClient],
) -> None:
    _sim, client = api
    response = await client.get("/primary_ips", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "code": "unauthorized",
            "message": "Request was made with an invalid or unknown token",
            "details": {},
        }
    }
    assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= set(response.headers)


async def test_a_throttled_request_is_429_and_not_carried_out(
    api: tuple[HetznerSimulator, httpx.AsyncClient],
) -> None:
    sim, client = api
    until = sim.throttle(5)
    response = await client.post("/primary_ips", json=CREATE)
    assert response.status_code == 429 and response.json()["error"]["code"] == "rate_limit_exceeded"
    assert response.headers["ratelimit-remaining"] == "0"
    assert int(response.headers["ratelimit-reset"]) >= until > time.time()
    assert sim.primary_ips == []


async def test_create_list_pages_and_delete_follow_the_documented_shapes(
    api: tuple[HetznerSimulator, httpx.AsyncClient],
) -> None:
    sim, client = api
    created = await client.post("/primary_ips", json={**CREATE, "labels": {"managed-by": "bulwark"}})
    assert created.status_code == 201 and created.json()["action"] is None
    ip = created.json()["primary_ip"]
    assert {"id", "ip", "type", "labels", "assignee_id", "datacenter", "protection", "dns_ptr"} <= set(ip)
    duplicate = await client.post("/primary_ips", json=CREATE)
    assert (duplicate.status_code, duplicate.json()["error"]["code"]) == (409, "uniqueness_error")
    both = await client.post("/primary_ips", json={**CREATE, "name": "b", "assignee_id": 1001})
    assert (both.status_code, both.json()["error"]["code"]) == (400, "invalid_input")
    for _ in range(2):
        sim.create_behind_back(labels={"managed-by": "bulwark"})
    page = (
        await client.get("/primary_ips", params={"label_selector": "managed-by=bulwark", "per_page": 2})
    ).json()
    assert [p["id"] for p in page["primary_ips"]] == [ip["id"], ip["id"] + 1]
    assert page["meta"]["pagination"] == {
        "page": 1,
        "per_page": 2,
        "previous_page": None,
        "next_page": 2,
        "last_page": 2,
        "total_entries": 3,
    }
    assign = await client.post(
        f"/primary_ips/{ip['id']}/actions/assign", json={"assignee_id": 1001, "assignee_type": "server"}
    )
    assert assign.status_code == 201 and assign.json()["action"]["command"] == "assign_primary_ip"
    refused = await client.delete(f"/primary_ips/{ip['id']}")
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "must_be_unassigned")
    await client.post(f"/primary_ips/{ip['id']}/actions/unassign")
    assert (await client.delete(f"/primary_ips/{ip['id']}")).status_code == 204
    gone = await client.get(f"/primary_ips/{ip['id']}")
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "not_found")
