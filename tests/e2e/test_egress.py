"""Dedicated egress addresses through the HTTP app (issue 19), on both backends: a paying plan
allocates, the user sees their address, the admin panel lists, releases (audited in full) and
forces allocations, the audit compares ledger, provider and gateway, an account closure tears the
address down at once; bad input is a 4xx problem that changes nothing."""

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from adapters.storage.tables import audit_events, egress_addresses
from entrypoints.cli import main
from entrypoints.settings import Settings
from tests.e2e.admin_helpers import PanelAdmin, platform_admin
from tests.e2e.conftest import Service, start_service
from tests.e2e.identity_helpers import DEFAULT_IP, NO_BODY, PASSWORD, login
from tests.e2e.test_admin_login import admin_settings
from tests.e2e.test_orgs_and_roles import Actor, new_user

PANEL = "/api/admin/v1"
MINE = "/api/v1/me/egress"
POOL = ("127.0.0.2", "127.0.0.3")


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return admin_settings(backend, tmp_path, request, egress_pool=",".join(POOL), jobs_interval_seconds=0)


@pytest.fixture
async def service(settings: Settings, redis_namespace: str) -> AsyncIterator[Service]:
    async for svc in start_service(settings, redis_namespace):
        yield svc


async def _admin(service: Service) -> PanelAdmin:
    return await platform_admin(service, ip=DEFAULT_IP)


async def _post(service: Service, admin: PanelAdmin, path: str, body: Any = None) -> httpx.Response:
    if body is None:
        return await service.client.post(f"{PANEL}{path}", headers={**admin.headers, **NO_BODY})
    return await service.client.post(f"{PANEL}{path}", headers=admin.headers, json=body)


async def _get(service: Service, admin: PanelAdmin, path: str, **params: Any) -> httpx.Response:
    return await service.client.get(f"{PANEL}{path}", headers=admin.headers, params=params)


async def _paying(service: Service, admin: PanelAdmin, prefix: str = "payer") -> Actor:
    user = await new_user(service, prefix)
    r = await service.client.put(
        f"{PANEL}/users/{user.user_id}/plan", json={"plan": "pro"}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    return user


async def _audited(service: Service, action: str) -> list[dict[str, Any]]:
    async with service.container.engine.connect() as conn:
        rows = await conn.execute(select(audit_events).where(audit_events.c.action == action))
        return [dict(row._mapping) for row in rows]


async def _ledger(service: Service) -> dict[str, tuple[str, str | None]]:
    async with service.container.engine.connect() as conn:
        rows = await conn.execute(select(egress_addresses))
        return {r.address: (r.state, None if r.user_id is None else str(r.user_id)) for r in rows}


def _problem(r: httpx.Response, status: int, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    if code is not None:
        assert r.json()["code"] == code, r.text


async def test_a_paying_plan_allocates_and_the_user_and_the_panel_see_the_address(service: Service) -> None:
    admin = await _admin(service)
    free = await new_user(service, "free")
    _problem(await service.client.get(MINE, headers=free.headers), 404, "no_egress_address")
    payer = await _paying(service, admin)
    r = await service.client.get(MINE, headers=payer.headers)
    assert r.status_code == 200, r.text
    mine = r.json()
    assert mine["address"] in POOL and mine["state"] == "allocated" and mine["since"]
    assert (await _get(service, admin, f"/users/{payer.user_id}")).json()["egress_address"] == mine["address"]
    assert await service.container.egress.bindings.live_address(uuid.UUID(payer.user_id)) == mine["address"]
    listed = (await _get(service, admin, "/egress/addresses", state="allocated")).json()
    assert [(i["address"], i["user_id"]) for i in listed["items"]] == [(mine["address"], payer.user_id)]
    assert [
        i["address"]
        for i in (await _get(service, admin, "/egress/addresses", user=payer.user_id)).json()["items"]
    ] == [mine["address"]]
    everything = (await _get(service, admin, "/egress/addresses", limit=1)).json()
    assert len(everything["items"]) == 1 and everything["next_cursor"]
    rest = (await _get(service, admin, "/egress/addresses", cursor=everything["next_cursor"])).json()
    assert {i["address"] for i in everything["items"] + rest["items"]} == set(POOL)
    # Without a session of either kind, nothing.
    assert (await service.client.get(MINE)).status_code == 401
    assert (await service.client.get(f"{PANEL}/egress/addresses", headers=payer.headers)).status_code == 401


async def test_a_downgrade_keeps_the_address_through_the_grace(service: Service) -> None:
    admin = await _admin(service)
    payer = await _paying(service, admin)
    r = await service.client.put(
        f"{PANEL}/users/{payer.user_id}/plan", json={"plan": "free"}, headers=admin.headers
    )
    assert r.status_code == 200
    [item] = (await _get(service, admin, "/egress/addresses", user=payer.user_id)).json()["items"]
    assert item["state"] == "allocated" and item["grace_until"] is not None
    await service.client.put(
        f"{PANEL}/users/{payer.user_id}/plan", json={"plan": "desk"}, headers=admin.headers
    )
    [again] = (await _get(service, admin, "/egress/addresses", user=payer.user_id)).json()["items"]
    assert again["address"] == item["address"] and again["grace_until"] is None


async def test_release_starts_the_teardown_at_once_and_is_audited_in_full(service: Service) -> None:
    admin = await _admin(service)
    payer = await _paying(service, admin)
    address = (await service.client.get(MINE, headers=payer.headers)).json()["address"]
    r = await _post(service, admin, f"/egress/addresses/{address}/release", {"reason": "abuse report 7"})
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["user_id"]) == ("draining", payer.user_id)
    assert await service.container.egress.bindings.live_address(uuid.UUID(payer.user_id)) is None
    assert (await service.client.get(MINE, headers=payer.headers)).json()["state"] == "draining"
    [event] = await _audited(service, "admin.egress.released")
    assert str(event["actor_user_id"]) == admin.user_id and event["target_id"] == payer.user_id
    assert event["details"]["request"] == {"address": address, "reason": "abuse report 7"}
    assert (
        event["details"]["before"]["state"] == "allocated"
        and event["details"]["after"]["state"] == "draining"
    )
    # Again: the teardown runs already; nothing changes, nothing more is audited.
    again = await _post(service, admin, f"/egress/addresses/{address}/release")
    assert again.status_code == 200 and again.json()["state"] == "draining"
    assert len(await _audited(service, "admin.egress.released")) == 1


async def test_bad_input_is_a_4xx_problem_that_changes_nothing(service: Service) -> None:
    admin = await _admin(service)
    payer = await _paying(service, admin)
    address = (await service.client.get(MINE, headers=payer.headers)).json()["address"]
    before = await _ledger(service)
    other = next(a for a in POOL if a != address)
    _problem(await _post(service, admin, "/egress/addresses/not-an-ip/release"), 400, "invalid_address")
    _problem(await _post(service, admin, "/egress/addresses/::1/release"), 400, "invalid_address")
    _problem(await _post(service, admin, "/egress/addresses/192.0.2.77/release"), 404)
    _problem(await _post(service, admin, f"/egress/addresses/{other}/release"), 409, "egress_not_allocated")
    _problem(await _post(service, admin, f"/egress/addresses/{address}/release", {"reason": "x" * 201}), 400)
    _problem(await _post(service, admin, f"/egress/addresses/{address}/release", {"reason": "a\x00b"}), 400)
    _problem(await _post(service, admin, f"/egress/addresses/{address}/release", {"extra": 1}), 400)
    _problem(await _get(service, admin, "/egress/addresses", state="borrowed"), 400, "invalid_state")
    _problem(await _get(service, admin, "/egress/addresses", limit=0), 400)
    _problem(await _get(service, admin, "/egress/addresses", cursor="not-an-ip"), 400)
    _problem(await _get(service, admin, "/egress/addresses", user="nope"), 400)
    _problem(await _post(service, admin, f"/users/{uuid.uuid4()}/egress/allocate"), 404)
    _problem(await _post(service, admin, "/users/nope/egress/allocate"), 404)
    assert await _ledger(service) == before
    assert await _audited(service, "admin.egress.released") == []


async def test_forcing_an_allocation_refuses_the_ineligible_and_reports_an_exhausted_pool(
    service: Service,
) -> None:
    admin = await _admin(service)
    free = await new_user(service, "free")
    _problem(
        await _post(service, admin, f"/users/{free.user_id}/egress/allocate"), 409, "egress_not_eligible"
    )
    first, second = await _paying(service, admin, "a"), await _paying(service, admin, "b")
    held = (await service.client.get(MINE, headers=first.headers)).json()["address"]
    r = await _post(service, admin, f"/users/{first.user_id}/egress/allocate")
    assert r.status_code == 200 and r.json()["address"] == held  # the live one, not a second
    third = await _paying(service, admin, "c")  # the pool of two is used up
    assert (await service.client.get(MINE, headers=third.headers)).status_code == 404
    _problem(
        await _post(service, admin, f"/users/{third.user_id}/egress/allocate"), 409, "egress_pool_exhausted"
    )
    assert len(await _audited(service, "admin.egress.allocate_forced")) == 2  # the refusal changed nothing
    audit = (await _get(service, admin, "/egress/audit")).json()
    assert [w["user_id"] for w in audit["waiting"]] == [third.user_id]
    assert audit["clean"] is False
    assert any("gateway" in why for why in audit["unchecked"])
    assert second.user_id in {
        i["user_id"] for i in (await _get(service, admin, "/egress/addresses")).json()["items"]
    }


async def test_closing_the_account_tears_the_address_down_at_once(service: Service) -> None:
    admin = await _admin(service)
    payer = await _paying(service, admin)
    me = await login(service.client, payer.email)
    address = (await service.client.get(MINE, headers=me.headers)).json()["address"]
    r = await service.client.request("DELETE", "/api/v1/me", json={"password": PASSWORD}, headers=me.headers)
    assert r.status_code == 204, r.text
    assert (await _ledger(service))[address] == ("draining", payer.user_id)
    assert await service.container.egress.bindings.live_address(uuid.UUID(payer.user_id)) is None
    # No gateway is configured here: the job cannot confirm phase 1, so it waits and says so.
    report = await service.container.egress.job()
    assert (await _ledger(service))[address] == ("draining", payer.user_id)
    assert any("no egress gateway" in why for why in report.held_back)


def test_the_egress_audit_command_reports_and_fails_on_findings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("BULWARK_")]:
        monkeypatch.delenv(name)
    env = {
        "BULWARK_DATA_DIR": str(tmp_path / "data"),
        "BULWARK_ARGON2_MEMORY_KIB": "19456",
        "BULWARK_EGRESS_POOL": "127.0.0.2",
    }
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"], env=env).exit_code == 0
    result = runner.invoke(main, ["egress", "audit"], env=env)
    # The pool's address is not in the ledger until something seeds it: a leak, and no gateway.
    assert result.exit_code == 1, result.output
    assert "leaks" in result.output and "127.0.0.2" in result.output and "gateway" in result.output
    jobs = runner.invoke(main, ["jobs", "run"], env=env)
    assert jobs.exit_code == 0, jobs.output
    assert "egress:" in jobs.output
    result = runner.invoke(main, ["egress", "audit"], env=env)
    assert "leaks" not in result.output and "not checked" in result.output
