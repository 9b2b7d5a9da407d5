"""The credential vault: service-client tokens, handing out broker access tokens at the moment of
use, one refresh per connection across processes, needs_reauth when the broker lets us down, and
key rotation. Against the cTrader simulator on loopback, on both backends."""

import asyncio
import base64
import dataclasses
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from adapters.crypto.hpke_sealing import HpkeOpener
from adapters.keys.keyring import load_keyring
from adapters.keys.vault_keys import add_opening_key, load_vault_keys, retire_opening_key, save_vault_keys
from adapters.storage.tables import audit_events, broker_connections
from application.ports.credential_sealing import CredentialUnreadable, broker_tokens_context
from domain.brokers import SealedCredential
from entrypoints.composition import VaultKeysRefused, load_keys
from tests.e2e.broker_world import BrokerWorld, access, connect, running_vault, service_token, trader
from tests.e2e.identity_helpers import set_user_status


async def connection_row(world: BrokerWorld) -> object:
    [row] = await world.rows(select(broker_connections))
    return row


def live_access_tokens(world: BrokerWorld) -> set[str]:
    return {t for t in world.sim.issued_tokens if world.sim.is_access_token_live(t)}


# -- service clients and their tokens --------------------------------------------------------------


async def test_client_credentials_by_basic_or_form_and_the_oauth_errors(world: BrokerWorld) -> None:
    created = await world.vault.container.create_client("trading-worker", ["broker_credentials:use"])
    form = {"content-type": "application/x-www-form-urlencoded"}
    r = await world.vault.client.post(
        "/vault/v1/token",
        content=f"grant_type=client_credentials&client_id={created.client.id}&client_secret={created.secret}",
        headers=form,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (
        body["token_type"] == "Bearer"
        and body["expires_in"] == 300
        and body["scope"] == "broker_credentials:use"
    )
    assert r.headers["cache-control"] == "no-store"
    header = json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[0] + "=="))
    assert header["typ"] == "at+jwt"
    wrong = base64.b64encode(f"{created.client.id}:not-the-secret".encode()).decode()
    r = await world.vault.client.post(
        "/vault/v1/token",
        content="grant_type=client_credentials",
        headers={**form, "authorization": f"Basic {wrong}"},
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = await world.vault.client.post("/vault/v1/token", content="grant_type=password", headers=form)
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = await world.vault.client.post(
        "/vault/v1/token",
        content=f"grant_type=client_credentials&client_id={created.client.id}&client_secret={created.secret}"
        "&scope=integration_secrets:use",
        headers=form,
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = await world.vault.client.post("/vault/v1/token", json={"grant_type": "client_credentials"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


async def test_a_service_token_is_refused_by_the_public_api_and_a_user_token_by_the_vault(
    world: BrokerWorld,
) -> None:
    actor = await trader(world)
    connection_id = await connect(world, actor)
    token = await service_token(world)
    r = await world.service.client.get("/api/v1/me", headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 401
    r = await world.service.client.get(
        f"/api/v1/orgs/{actor.org_id}/broker-connections", headers={"authorization": f"Bearer {token}"}
    )
    assert r.status_code == 401
    r = await access(world.vault, actor.access, connection_id)
    assert r.status_code == 401 and r.json()["code"] == "invalid_token"
    assert (await access(world.vault, token, connection_id)).status_code == 200


async def test_a_disabled_client_stops_at_once_and_a_rotated_secret_overlaps(world: BrokerWorld) -> None:
    actor = await trader(world)
    connection_id = await connect(world, actor)
    created = await world.vault.container.create_client("worker-a", ["broker_credentials:use"])
    rotated = await world.vault.container.rotate_client_secret("worker-a")
    form = {"content-type": "application/x-www-form-urlencoded"}

    async def token_with(secret: str) -> int:
        r = await world.vault.client.post(
            "/vault/v1/token",
            content=f"grant_type=client_credentials&client_id={created.client.id}&client_secret={secret}",
            headers=form,
        )
        return r.status_code

    assert await token_with(created.secret) == 200  # inside the overlap
    assert await token_with(rotated.secret) == 200
    world.clock.advance(world.settings.service_client_secret_overlap_seconds + 1)
    assert await token_with(created.secret) == 401
    r = await world.vault.client.post(
        "/vault/v1/token",
        content=f"grant_type=client_credentials&client_id={created.client.id}&client_secret={rotated.secret}",
        headers=form,
    )
    token = r.json()["access_token"]
    await world.vault.container.disable_client("worker-a")
    r = await access(world.vault, token, connection_id)
    assert r.status_code == 403 and r.json()["code"] == "client_disabled"
    assert await token_with(rotated.secret) == 401


# -- access ---------------------------------------------------------------------------------------


async def test_access_hands_out_the_live_token_and_audits_who_why_and_what_never(world: BrokerWorld) -> None:
    actor = await trader(world)
    connection_id = await connect(world, actor)
    token = await service_token(world)
    r = await access(world.vault, token, connection_id, purpose="deployment-42")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["access_token"] in live_access_tokens(world)
    assert body["scope"] == "trading" and len(body["accounts"]) == 2 and body["expires_at"]
    assert r.headers["cache-control"] == "no-store"
    rows = await world.rows(
        select(audit_events).where(audit_events.c.action == "broker_credentials.accessed")
    )
    assert len(rows) == 1
    assert rows[0].details["purpose"] == "deployment-42" and rows[0].actor_kind == "service"
    assert str(rows[0].org_id) == actor.org_id and rows[0].target_id == connection_id
    assert body["access_token"] not in json.dumps([dict(r._mapping) for r in rows], default=str)


async def test_access_refuses_revoked_paused_disabled_and_unknown(world: BrokerWorld) -> None:
    actor = await trader(world)
    connection_id = await connect(world, actor)
    token = await service_token(world)
    r = await access(world.vault, token, "00000000-0000-4000-8000-000000000000")
    assert r.status_code == 404
    r = await access(world.vault, token, connection_id, purpose="")
    assert r.status_code == 400
    r = await world.vault.client.post(
        f"/vault/v1/broker-connections/{connection_id}/access",
        json={"purpose": "x", "extra": 1},
        headers={"authorization": f"Bearer {token}"},
    )
    assert r.status_code == 400
    await set_user_status(world.service, actor.email, "suspended")
    r = await access(world.vault, token, connection_id)
    assert r.status_code == 403 and r.json()["code"] == "owner_unavailable"
    await set_user_status(world.service, actor.email, "active")
    assert (await access(world.vault, token, connection_id)).status_code == 200
    r = await world.service.client.delete(
        f"/api/v1/orgs/{actor.org_id}/broker-connections/{connection_id}", headers=actor.headers
    )
    assert r.status_code == 200
    assert (await access(world.vault, token, connection_id)).status_code == 404


async def test_a_client_over_its_limit_gets_429(world: BrokerWorld) -> None:
    actor = await trader(world)
    connection_id = await connect(world, actor)
    limited = dataclasses.replace(world.settings, vault_access_limit_per_client="3/60")
    async with running_vault(limited, world.namespace + ":limited", world.clock) as vault:
        world_with = dataclasses.replace(world, vault=vault)
        token = await service_token(world_with)
        codes = [(await access(vault, token, connection_id)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


# -- refresh ---------------------------------------------------------------------------------------


async def test_fifty_parallel_accesses_due_for_refresh_spend_the_refresh_token_once(
    world: BrokerWorld,
) -> None:
    world.sim.expires_in = 3600  # inside the 7-day margin: every access finds the token due
    actor = await trader(world)
    connection_id = await connect(world, actor)
    assert world.sim.refresh_calls == {}
    world.sim.expires_in = 2_628_000  # the refreshed token is good for 30 days: due once
    token = await service_token(world)
    answers = await asyncio.gather(*(access(world.vault, token, connection_id) for _ in range(50)))
    assert [r.status_code for r in answers] == [200] * 50, {r.text for r in answers if r.status_code != 200}
    assert sum(world.sim.refresh_calls.values()) == 1, world.sim.refresh_calls
    assert {r.json()["access_token"] for r in answers} <= live_access_tokens(world)
    refreshed = await world.rows(
        select(audit_events).where(audit_events.c.action == "broker_connection.refreshed")
    )
    assert len(refreshed) == 1


async def test_two_vault_processes_refreshing_at_once_spend_the_refresh_token_once(
    world: BrokerWorld,
) -> None:
    world.sim.expires_in = 3600
    world.sim.token_delay = 0.3  # the first claimant is still at the broker when the other asks
    actor = await trader(world)
    connection_id = await connect(world, actor)
    world.sim.expires_in = 2_628_000
    token = await service_token(world)
    async with running_vault(world.settings, world.namespace, world.clock) as second:
        answers = await asyncio.gather(
            *(access(world.vault, token, connection_id) for _ in range(25)),
            *(access(second, token, connection_id) for _ in range(25)),
        )
    assert [r.status_code for r in answers] == [200] * 50, {r.text for r in answers if r.status_code != 200}
    assert sum(world.sim.refresh_calls.values()) == 1, world.sim.refresh_calls
    assert len({r.json()["access_token"] for r in answers}) == 1


async def test_a_lost_refresh_answer_makes_the_connection_need_reauth_never_a_stale_token(
    world: BrokerWorld,
) -> None:
    world.sim.expires_in = 3600
    actor = await trader(world)
    connection_id = await connect(world, actor)
    token = await service_token(world)
    world.sim.drop_next_token_answers = 1  # cTrader rotates the token, the answer never arrives
    r = await access(world.vault, token, connection_id)
    assert r.status_code == 409 and r.json()["code"] == "needs_reauth", r.text
    assert sum(world.sim.refresh_calls.values()) == 1
    r = await access(world.vault, token, connection_id)
    assert r.status_code == 409 and r.json()["code"] == "needs_reauth"
    assert sum(world.sim.refresh_calls.values()) == 1  # the dead refresh token is not tried again
    row = await connection_row(world)
    assert row.status == "needs_reauth"  # type: ignore[attr-defined]
    assert await _vault_mailed(world, actor.email)
    shown = await world.service.client.get(
        f"/api/v1/orgs/{actor.org_id}/broker-connections/{connection_id}", headers=actor.headers
    )
    assert shown.json()["status"] == "needs_reauth"
    # Connecting again (same id) brings it back.
    world.sim.expires_in = 2_628_000
    assert await connect(world, actor, connection_id=connection_id) == connection_id
    assert (await access(world.vault, token, connection_id)).status_code == 200


async def _vault_mailed(world: BrokerWorld, to: str) -> bool:
    outbox = Path(world.settings.data_dir) / "outbox.jsonl"
    return outbox.exists() and any(
        json.loads(line)["to"] == to and "Reconnect" in json.loads(line)["subject"]
        for line in outbox.read_text().splitlines()
    )


async def test_a_refused_refresh_means_the_user_revoked_us_and_is_audited(world: BrokerWorld) -> None:
    world.sim.expires_in = 3600
    actor = await trader(world)
    connection_id = await connect(world, actor)
    token = await service_token(world)
    world.sim.revoke_user()
    r = await access(world.vault, token, connection_id)
    assert r.status_code == 409 and r.json()["code"] == "needs_reauth"
    rows = await world.rows(
        select(audit_events).where(audit_events.c.action == "broker_connection.needs_reauth")
    )
    assert len(rows) == 1 and "refused" in rows[0].details["reason"]
    assert await _vault_mailed(world, actor.email)


async def test_an_unreachable_broker_keeps_the_refresh_token_and_serves_the_valid_token(
    world: BrokerWorld,
) -> None:
    world.sim.expires_in = 3600
    actor = await trader(world)
    connection_id = await connect(world, actor)
    before = live_access_tokens(world)
    closed = dataclasses.replace(world.settings, ctrader_token_url="http://127.0.0.1:9/apps/token")
    async with running_vault(closed, world.namespace, world.clock) as vault:
        token = await service_token(dataclasses.replace(world, vault=vault))
        r = await access(vault, token, connection_id)
    assert r.status_code == 200 and r.json()["access_token"] in before
    row = await connection_row(world)
    assert row.status == "active" and row.refresh_claimed_at is None  # type: ignore[attr-defined]
    assert sum(world.sim.refresh_calls.values()) == 0


async def test_a_worker_reporting_an_invalid_token_turns_the_connection_needs_reauth(
    world: BrokerWorld,
) -> None:
    actor = await trader(world)
    connection_id = await connect(world, actor)
    token = await service_token(world)
    r = await world.vault.client.post(
        f"/vault/v1/broker-connections/{connection_id}/report-invalid",
        json={"reason": "CH_ACCESS_TOKEN_INVALID"},
        headers={"authorization": f"Bearer {token}"},
    )
    assert r.status_code == 204, r.text
    assert (await access(world.vault, token, connection_id)).json()["code"] == "needs_reauth"
    assert await _vault_mailed(world, actor.email)


# -- who can open what ----------------------------------------------------------------------------


async def test_the_public_api_cannot_open_a_sealed_credential(world: BrokerWorld) -> None:
    """Everything secret the public API process holds, tried as the opening key: none opens it.
    Handed the vault's key file as its keyring, the public API refuses to start."""
    actor = await trader(world)
    connection_id = await connect(world, actor)
    row = await connection_row(world)
    sealed = SealedCredential(row.sealed_key_id, bytes(row.sealed_tokens))  # type: ignore[attr-defined]
    context = broker_tokens_context(row.id, row.org_id)  # type: ignore[attr-defined]
    keyring = load_keyring(world.settings.data_dir / "keys.json")
    candidates = [
        *keyring.master_keys.values(),
        *keyring.peppers.values(),
        *keyring.broker_sealing_keys.values(),
    ]
    for secret in candidates:
        with pytest.raises(CredentialUnreadable):
            HpkeOpener({sealed.key_id: secret}, sealed.key_id).open(sealed, context)
    assert not hasattr(world.service.container.brokers.start_authorization.ports.sealer, "open")
    vault_keys = load_vault_keys(world.settings.data_dir / "vault-keys.json")
    plaintext = HpkeOpener(vault_keys.opening_keys, vault_keys.active_opening_key_id).open(sealed, context)
    assert json.loads(plaintext)["access_token"] in live_access_tokens(world)
    # The same ciphertext moved to another row does not open, even in the vault.
    elsewhere = broker_tokens_context(row.org_id, row.id)  # type: ignore[attr-defined]
    with pytest.raises(CredentialUnreadable):
        HpkeOpener(vault_keys.opening_keys, vault_keys.active_opening_key_id).open(sealed, elsewhere)
    with pytest.raises(VaultKeysRefused):
        load_keys(dataclasses.replace(world.settings, keys_file=world.settings.data_dir / "vault-keys.json"))
    assert connection_id


async def test_a_database_dump_holds_no_broker_token(world: BrokerWorld) -> None:
    world.sim.expires_in = 3600
    actor = await trader(world)
    connection_id = await connect(world, actor)
    token = await service_token(world)
    assert (await access(world.vault, token, connection_id)).status_code == 200  # refreshed and re-sealed
    r = await world.service.client.post(
        f"/api/v1/orgs/{actor.org_id}/integration-secrets",
        json={"name": "vendor", "kind": "api_key", "value": "vendor-secret-value-123456"},
        headers=actor.headers,
    )
    assert r.status_code == 201
    dump = await world.dump()
    assert len(world.sim.issued_tokens) >= 4
    leaked = [t for t in world.sim.issued_tokens if t in dump]
    assert not leaked, "a broker token is readable in the database"
    assert "vendor-secret-value-123456" not in dump


async def test_rotation_reseals_everything_and_old_and_new_keys_open(world: BrokerWorld) -> None:
    actor = await trader(world)
    first = await connect(world, actor)
    r = await world.service.client.post(
        f"/api/v1/orgs/{actor.org_id}/integration-secrets",
        json={"name": "vendor", "kind": "api_key", "value": "vendor-secret"},
        headers=actor.headers,
    )
    secret_id = r.json()["id"]
    path = world.settings.data_dir / "vault-keys.json"
    old = load_vault_keys(path)
    rotated = add_opening_key(old)
    save_vault_keys(rotated, path)
    async with running_vault(world.settings, world.namespace, world.clock) as vault:
        report = await vault.container.reseal()
        assert report.resealed == 2
        # The public API still seals with the old public half until its keyring is updated.
        second = await connect(world, actor)
        keys = {row.sealed_key_id for row in await world.rows(select(broker_connections))}
        assert keys == {old.active_opening_key_id, rotated.active_opening_key_id}
        token = await service_token(
            dataclasses.replace(world, vault=vault), ("broker_credentials:use", "integration_secrets:use")
        )
        for connection_id in (first, second):
            assert (await access(vault, token, connection_id)).status_code == 200
        again = await vault.container.reseal()
        assert (again.resealed, again.already_current) == (1, 2)
    save_vault_keys(retire_opening_key(rotated, old.active_opening_key_id), path)
    async with running_vault(world.settings, world.namespace, world.clock) as vault:
        token = await service_token(
            dataclasses.replace(world, vault=vault), ("broker_credentials:use", "integration_secrets:use")
        )
        for connection_id in (first, second):
            assert (await access(vault, token, connection_id)).status_code == 200
        r = await vault.client.post(
            f"/vault/v1/integration-secrets/{secret_id}/access",
            json={"purpose": "sync"},
            headers={"authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200 and r.json()["value"] == "vendor-secret"


async def test_integration_secrets_open_only_for_their_scope(world: BrokerWorld) -> None:
    actor = await trader(world)
    r = await world.service.client.post(
        f"/api/v1/orgs/{actor.org_id}/integration-secrets",
        json={"name": "vendor", "kind": "api_key", "value": "vendor-secret"},
        headers=actor.headers,
    )
    secret_id = r.json()["id"]
    broker_only = await service_token(world)
    r = await world.vault.client.post(
        f"/vault/v1/integration-secrets/{secret_id}/access",
        json={"purpose": "sync"},
        headers={"authorization": f"Bearer {broker_only}"},
    )
    assert r.status_code == 403 and r.json()["code"] == "insufficient_scope"
    both = await service_token(world, ("integration_secrets:use",))
    r = await world.vault.client.post(
        f"/vault/v1/integration-secrets/{secret_id}/access",
        json={"purpose": "sync"},
        headers={"authorization": f"Bearer {both}"},
    )
    assert r.status_code == 200 and r.json()["value"] == "vendor-secret"
    rows = await world.rows(
        select(audit_events).where(audit_events.c.action == "integration_secret.accessed")
    )
    assert len(rows) == 1 and "vendor-secret" not in json.dumps(rows[0].details)


async def test_a_refresh_finishes_even_when_its_request_is_cancelled(world: BrokerWorld) -> None:
    """The request timeout cancels the request, not the refresh: tokens the broker has just
    rotated are stored, and the claim is cleared."""
    world.sim.expires_in = 3600
    actor = await trader(world)
    connection_id = await connect(world, actor)
    world.sim.expires_in = 2_628_000
    world.sim.token_delay = 0.5
    token = await service_token(world)
    request = asyncio.ensure_future(access(world.vault, token, connection_id))
    await asyncio.sleep(0.2)  # the claim is taken and cTrader is working on it
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    await asyncio.gather(*world.vault.container.access.ports.in_flight)
    row = await connection_row(world)
    assert row.generation == 1 and row.refresh_claimed_at is None and row.status == "active"  # type: ignore[attr-defined]
    assert sum(world.sim.refresh_calls.values()) == 1
    world.sim.token_delay = 0
    r = await access(world.vault, token, connection_id)
    assert r.status_code == 200 and r.json()["access_token"] in live_access_tokens(world)
    assert sum(world.sim.refresh_calls.values()) == 1


async def test_a_throttled_refresh_keeps_the_refresh_token(world: BrokerWorld) -> None:
    world.sim.expires_in = 3600
    actor = await trader(world)
    connection_id = await connect(world, actor)
    token = await service_token(world)
    world.sim.token_http_status = 429
    r = await access(world.vault, token, connection_id)
    assert r.status_code == 200 and r.json()["access_token"] in live_access_tokens(world)
    row = await connection_row(world)
    assert row.status == "active" and row.refresh_claimed_at is None  # type: ignore[attr-defined]


async def test_rotation_leaves_a_row_being_refreshed_alone(world: BrokerWorld) -> None:
    actor = await trader(world)
    connection_id = await connect(world, actor)
    path = world.settings.data_dir / "vault-keys.json"
    save_vault_keys(add_opening_key(load_vault_keys(path)), path)
    async with running_vault(world.settings, world.namespace, world.clock) as vault:
        row = await connection_row(world)
        async with vault.container.access.ports.uow() as uow:
            assert await uow.broker_connections.claim_refresh(
                row.org_id,
                row.id,
                row.generation,
                world.clock.now(),  # type: ignore[attr-defined]
            )
            await uow.commit()
        report = await vault.container.reseal()
        assert (report.resealed, report.busy) == (0, 1)
        async with vault.container.access.ports.uow() as uow:
            await uow.broker_connections.release_refresh(row.org_id, row.id, row.generation)  # type: ignore[attr-defined]
            await uow.commit()
        assert (await vault.container.reseal()).resealed == 1
    assert connection_id


async def test_a_running_vault_opens_what_a_rotation_resealed_without_a_restart(world: BrokerWorld) -> None:
    actor = await trader(world)
    connection_id = await connect(world, actor)
    token = await service_token(world)
    assert (await access(world.vault, token, connection_id)).status_code == 200
    path = world.settings.data_dir / "vault-keys.json"
    save_vault_keys(add_opening_key(load_vault_keys(path)), path)
    async with running_vault(world.settings, world.namespace, world.clock) as operator:
        assert (await operator.container.reseal()).resealed == 1  # what `bulwark vault rotate` runs
    row = await connection_row(world)
    assert row.sealed_key_id == load_vault_keys(path).active_opening_key_id  # type: ignore[attr-defined]
    r = await access(world.vault, token, connection_id)  # the vault started before the rotation
    assert r.status_code == 200, r.text


async def test_refresh_due_refreshes_what_is_inside_the_margin_and_reports_the_lost(
    world: BrokerWorld,
) -> None:
    world.sim.expires_in = 3600
    actor = await trader(world)
    due = await connect(world, actor)
    doomed = await connect(world, await trader(world, "other"))
    world.sim.expires_in = 2_628_000
    fresh = await connect(world, await trader(world, "fresh"))
    # The second connection's refresh token dies at cTrader (its user revoked us there).
    rows = {str(r.id): r for r in await world.rows(select(broker_connections))}
    plaintext = HpkeOpener(
        load_vault_keys(world.settings.data_dir / "vault-keys.json").opening_keys,
        rows[doomed].sealed_key_id,
    ).open(
        SealedCredential(rows[doomed].sealed_key_id, bytes(rows[doomed].sealed_tokens)),
        broker_tokens_context(rows[doomed].id, rows[doomed].org_id),
    )
    world.sim._by_refresh[json.loads(plaintext)["refresh_token"]].alive = False
    report = await world.vault.container.refresh_due()
    assert (report.refreshed, report.needs_reauth, report.failed) == (1, 1, 0)
    after = {str(r.id): r for r in await world.rows(select(broker_connections))}
    assert after[due].generation == 1 and after[due].status == "active"
    assert after[doomed].status == "needs_reauth"
    assert after[fresh].generation == 0
    assert sum(world.sim.refresh_calls.values()) == 2


async def test_access_stops_for_a_disabled_org_and_an_owner_who_left(world: BrokerWorld) -> None:
    from adapters.storage.database import create_engine
    from adapters.storage.tables import memberships, organisations

    actor = await trader(world)
    connection_id = await connect(world, actor)
    r = await world.service.client.post(
        f"/api/v1/orgs/{actor.org_id}/integration-secrets",
        json={"name": "vendor", "kind": "api_key", "value": "vendor-secret"},
        headers=actor.headers,
    )
    secret_path = f"/vault/v1/integration-secrets/{r.json()['id']}/access"
    token = await service_token(world, ("broker_credentials:use", "integration_secrets:use"))
    bearer = {"authorization": f"Bearer {token}"}
    assert (await access(world.vault, token, connection_id)).status_code == 200
    owner = create_engine(world.owner_url, pool_size=1)
    try:
        async with owner.begin() as conn:
            await conn.execute(organisations.update().values(status="disabled"))
        r = await access(world.vault, token, connection_id)
        assert r.status_code == 403 and r.json()["code"] == "org_disabled"
        r = await world.vault.client.post(secret_path, json={"purpose": "sync"}, headers=bearer)
        assert r.status_code == 403 and r.json()["code"] == "org_disabled"
        async with owner.begin() as conn:
            await conn.execute(organisations.update().values(status="active"))
            await conn.execute(memberships.delete())
        r = await access(world.vault, token, connection_id)
        assert r.status_code == 403 and r.json()["code"] == "owner_unavailable"
    finally:
        await owner.dispose()
