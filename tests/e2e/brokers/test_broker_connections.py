"""Connecting a cTrader account, driven as a browser drives it, against the cTrader simulator on
loopback; then listing, renaming and revoking. Both backends."""

import dataclasses
import json
from typing import Any

import httpx
from sqlalchemy import select

from adapters.storage.tables import audit_events, broker_connections
from domain.permissions import SYSTEM_ROLE_IDS, SystemRole
from tests.e2e.broker_world import (
    BrokerWorld,
    come_back,
    connect,
    consent,
    flow_cookie,
    start_flow,
    trader,
)
from tests.e2e.conftest import FRONTEND
from tests.e2e.identity_helpers import service_with
from tests.e2e.test_orgs_and_roles import Actor, create_org, join, new_user


def error_of(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(f"{FRONTEND}/broker-connections?error="), location
    return location.rsplit("=", 1)[1]


def no_token_in(world: BrokerWorld, text: str) -> None:
    leaked = [t for t in world.sim.issued_tokens if t in text]
    assert not leaked, "a broker token reached a response"


async def test_the_whole_connect_flow_stores_a_connection_and_shows_no_token(world: BrokerWorld) -> None:
    actor = await trader(world)
    started = await start_flow(world, actor)
    assert started.status_code == 200, started.text
    url = started.json()["authorization_url"]
    assert url.startswith(world.sim.auth_url) and "state=" in url and "client_id=" in url
    cookie = flow_cookie(started)
    assert "SameSite=Lax" in started.headers["set-cookie"] and "HttpOnly" in started.headers["set-cookie"]
    location = await consent(world, url)
    back = await come_back(world, location, cookie)
    assert back.status_code == 303
    assert back.headers["cache-control"] == "no-store"
    connection_id = back.headers["location"].rsplit("=", 1)[1]
    listed = await world.service.client.get(
        f"/api/v1/orgs/{actor.org_id}/broker-connections", headers=actor.headers
    )
    assert listed.status_code == 200
    [connection] = listed.json()["connections"]
    assert connection["id"] == connection_id
    assert connection["status"] == "active" and connection["scope"] == "trading"
    assert {a["ctid_trader_account_id"] for a in connection["accounts"]} == {40001, 40002}
    assert connection["created_by"] == actor.user_id and connection["access_expires_at"]
    no_token_in(world, listed.text + back.text + back.headers["location"])
    one = await world.service.client.get(
        f"/api/v1/orgs/{actor.org_id}/broker-connections/{connection_id}", headers=actor.headers
    )
    assert one.status_code == 200 and one.json() == connection
    rows = await world.rows(select(audit_events.c.action, audit_events.c.details))
    assert "broker_connection.created" in [r.action for r in rows]
    no_token_in(world, json.dumps([r.details for r in rows]))


async def test_a_state_works_once(world: BrokerWorld) -> None:
    actor = await trader(world)
    started = await start_flow(world, actor)
    location = await consent(world, started.json()["authorization_url"])
    assert (await come_back(world, location, flow_cookie(started))).headers["location"].count(
        "connected="
    ) == 1
    again = await come_back(world, location, flow_cookie(started))
    assert error_of(again) == "invalid_state"


async def test_a_state_expires_after_ten_minutes(world: BrokerWorld) -> None:
    actor = await trader(world)
    started = await start_flow(world, actor)
    location = await consent(world, started.json()["authorization_url"])
    world.clock.advance(601)
    assert error_of(await come_back(world, location, flow_cookie(started))) == "invalid_state"


async def test_a_state_started_by_another_user_does_not_complete_in_this_browser(world: BrokerWorld) -> None:
    """OAuth login CSRF: an attacker starts a flow and has a victim consent with it. Without the
    starter's browser cookie the callback refuses, so no victim's broker account lands in the
    attacker's org."""
    attacker = await trader(world, "attacker")
    started = await start_flow(world, attacker)
    location = await consent(world, started.json()["authorization_url"])  # the victim consents
    assert error_of(await come_back(world, location)) == "invalid_state"  # victim's browser: no cookie
    victim = await trader(world, "victim")
    victims_flow = await start_flow(world, victim)
    assert error_of(await come_back(world, location, flow_cookie(victims_flow))) == "invalid_state"
    listed = await world.service.client.get(
        f"/api/v1/orgs/{attacker.org_id}/broker-connections", headers=attacker.headers
    )
    assert listed.json()["connections"] == []


async def test_a_state_whose_session_logged_out_is_refused(world: BrokerWorld) -> None:
    actor = await trader(world)
    started = await start_flow(world, actor)
    location = await consent(world, started.json()["authorization_url"])
    r = await world.service.client.post("/api/v1/auth/logout", headers=actor.headers)
    assert r.status_code in (200, 204), r.text
    assert error_of(await come_back(world, location, flow_cookie(started))) == "invalid_state"


async def test_every_error_path_lands_on_the_frontend_with_its_code(world: BrokerWorld) -> None:
    actor = await trader(world)

    async def attempt(**knobs: Any) -> str:
        for name, value in knobs.items():
            setattr(world.sim, name, value)
        started = await start_flow(world, actor)
        location = await consent(world, started.json()["authorization_url"])
        world.sim.consent = "approve"
        return error_of(await come_back(world, location, flow_cookie(started)))

    assert await attempt(consent="deny") == "access_denied"
    assert await attempt(token_http_500=1) == "broker_unavailable"
    assert await attempt(ws_drop=True) == "broker_unavailable"
    world.sim.ws_drop = False
    # A code that cTrader refuses (expired: it lives about a minute).
    started = await start_flow(world, actor)
    location = await consent(world, started.json()["authorization_url"])
    world.sim.advance(61)
    assert error_of(await come_back(world, location, flow_cookie(started))) == "exchange_failed"
    assert (
        error_of(await come_back(world, "/api/v1/broker-connections/ctrader/callback?code=x"))
        == "invalid_state"
    )
    assert error_of(
        await come_back(world, "/api/v1/broker-connections/ctrader/callback?state=" + "a" * 500)
    ) == ("invalid_state")
    listed = await world.service.client.get(
        f"/api/v1/orgs/{actor.org_id}/broker-connections", headers=actor.headers
    )
    assert listed.json()["connections"] == []


async def test_authorize_needs_a_recent_authentication_and_the_permission(world: BrokerWorld) -> None:
    admin = await trader(world, "admin")
    _, admin = await create_org(world.service, admin)
    viewer = await join(world.service, admin, await new_user(world.service, "viewer"))
    r = await start_flow(world, viewer)
    assert r.status_code == 403 and r.json()["code"] == "permission_denied"
    world.clock.advance(601)  # the admin's login is no longer recent
    r = await start_flow(world, admin)
    assert r.status_code == 401 and r.json()["code"] == "reauth_required"


async def test_reauthorising_keeps_the_id_and_replaces_the_tokens(world: BrokerWorld) -> None:
    actor = await trader(world)
    connection_id = await connect(world, actor)
    [(before,)] = await world.rows(select(broker_connections.c.sealed_tokens))
    again = await connect(world, actor, connection_id=connection_id)
    assert again == connection_id
    rows = await world.rows(select(broker_connections.c.sealed_tokens, broker_connections.c.generation))
    assert len(rows) == 1 and rows[0].sealed_tokens != before and rows[0].generation == 1


async def test_rename_and_delete_destroy_the_tokens_and_point_to_cTrader(world: BrokerWorld) -> None:
    actor = await trader(world)
    connection_id = await connect(world, actor)
    base = f"/api/v1/orgs/{actor.org_id}/broker-connections/{connection_id}"
    r = await world.service.client.patch(base, json={"label": "Main account"}, headers=actor.headers)
    assert r.status_code == 200 and r.json()["label"] == "Main account"
    r = await world.service.client.patch(base, json={"label": "x\u0000"}, headers=actor.headers)
    assert r.status_code == 400
    r = await world.service.client.patch(base, json={"label": "ok", "token": "x"}, headers=actor.headers)
    assert r.status_code == 400
    world.clock.advance(601)
    r = await world.service.client.delete(base, headers=actor.headers)
    assert r.status_code == 401 and r.json()["code"] == "reauth_required"
    world.clock.advance(-601)
    r = await world.service.client.delete(base, headers=actor.headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "revoked" and r.json()["revoke_at_broker_url"].startswith("https://")
    [row] = await world.rows(select(broker_connections))
    assert row.sealed_tokens is None and row.sealed_key_id is None and row.status == "revoked"
    shown = await world.service.client.get(base, headers=actor.headers)
    assert shown.json()["status"] == "revoked"


async def test_another_orgs_members_see_nothing_of_a_connection(world: BrokerWorld) -> None:
    owner = await trader(world, "owner")
    connection_id = await connect(world, owner)
    stranger = await trader(world, "stranger")
    for path in (
        f"/api/v1/orgs/{owner.org_id}/broker-connections",
        f"/api/v1/orgs/{owner.org_id}/broker-connections/{connection_id}",
        f"/api/v1/orgs/{stranger.org_id}/broker-connections/{connection_id}",
    ):
        r = await world.service.client.get(path, headers=stranger.headers)
        assert r.status_code == 404, (path, r.text)
    r = await world.service.client.delete(
        f"/api/v1/orgs/{stranger.org_id}/broker-connections/{connection_id}", headers=stranger.headers
    )
    assert r.status_code == 404


async def test_integration_secrets_are_write_only_on_the_public_api(world: BrokerWorld) -> None:
    actor = await trader(world)
    base = f"/api/v1/orgs/{actor.org_id}/integration-secrets"
    r = await world.service.client.post(
        base,
        json={"name": "polygon", "kind": "api_key", "value": "pk_live_very_secret_value"},
        headers=actor.headers,
    )
    assert r.status_code == 201, r.text
    secret_id = r.json()["id"]
    assert "value" not in r.json()
    listed = await world.service.client.get(base, headers=actor.headers)
    assert listed.json()["secrets"] == [r.json()] and "pk_live" not in listed.text
    dup = await world.service.client.post(
        base, json={"name": "polygon", "kind": "api_key", "value": "other"}, headers=actor.headers
    )
    assert dup.status_code == 400 and dup.json()["code"] == "name_taken"
    r = await world.service.client.delete(f"{base}/{secret_id}", headers=actor.headers)
    assert r.status_code == 204
    assert (await world.service.client.get(base, headers=actor.headers)).json()["secrets"] == []


async def admin_and_operations(world: BrokerWorld) -> tuple[Actor, Actor]:
    """A shared org's administrator, and a member holding the Operations role (broker connections)."""
    admin = await trader(world, "admin")
    _, admin = await create_org(world.service, admin)
    operations = await join(
        world.service,
        admin,
        await new_user(world.service, "ops"),
        role_ids=[str(SYSTEM_ROLE_IDS[SystemRole.OPERATIONS])],
    )
    return admin, operations


async def test_reconnecting_is_for_the_owner_or_an_administrator(world: BrokerWorld) -> None:
    admin, operations = await admin_and_operations(world)
    owned_by_admin = await connect(world, admin)
    r = await start_flow(world, operations, connection_id=owned_by_admin)
    assert r.status_code == 403 and r.json()["code"] == "not_owner"
    own = await connect(world, operations)
    assert await connect(world, operations, connection_id=own) == own
    assert await connect(world, admin, connection_id=own) == own  # an administrator may


async def test_a_user_who_lost_the_right_meanwhile_spends_no_code(world: BrokerWorld) -> None:
    admin, operations = await admin_and_operations(world)
    started = await start_flow(world, operations)
    assert started.status_code == 200, started.text
    location = await consent(world, started.json()["authorization_url"])
    r = await world.service.client.delete(
        f"/api/v1/orgs/{admin.org_id}/members/{operations.user_id}/roles/{SYSTEM_ROLE_IDS[SystemRole.OPERATIONS]}",
        headers=admin.headers,
    )
    assert r.status_code == 204, r.text
    requests_before = world.sim.stats.token_requests
    assert error_of(await come_back(world, location, flow_cookie(started))) == "access_denied"
    assert world.sim.stats.token_requests == requests_before
    listed = await world.service.client.get(
        f"/api/v1/orgs/{admin.org_id}/broker-connections", headers=admin.headers
    )
    assert listed.json()["connections"] == []


async def test_without_a_ctrader_client_id_its_endpoints_answer_provider_not_configured(
    world: BrokerWorld,
) -> None:
    unconfigured = dataclasses.replace(world.settings, ctrader_client_id="")
    async with service_with(unconfigured, world.namespace + ":off") as service:
        actor = await new_user(service, "plain")
        r = await service.client.post(
            f"/api/v1/orgs/{actor.org_id}/broker-connections/ctrader/authorize",
            json={},
            headers=actor.headers,
        )
        assert r.status_code == 404 and r.json()["code"] == "provider_not_configured"
        r = await service.client.get("/api/v1/broker-connections/ctrader/callback?code=a&state=b")
        assert r.status_code == 404 and r.json()["code"] == "provider_not_configured"
