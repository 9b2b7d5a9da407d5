"""The vault hands out the egress part with broker credentials (issue 19): the owner's dedicated
address and a short-lived proxy credential bound to that user and that address, or
`egress_pending` when they hold none (their broker traffic is refused, never shared). On both
backends, with the ledger's real lookup."""

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update

from adapters.egress.credential_tokens import EdDsaEgressCredentialVerifier
from adapters.keys.egress_verify_keys import public_halves
from adapters.storage.database import create_engine
from adapters.storage.tables import audit_events, users
from adapters.storage.unit_of_work import SqlUnitOfWorkFactory
from application.egress_ledger import start_teardown_of
from application.ports.egress_provider import ProviderAddress
from application.use_cases.egress_admission import AdmitEgress, EgressAdmitted, EgressRefused
from domain.egress import SYSTEM
from domain.egress_credentials import EgressRefusal, proxy_username
from entrypoints.composition import egress_issuer
from tests.e2e.broker_world import BrokerWorld, access, connect, service_token, trader
from tests.egress_doubles import FixedPool


async def give_address(world: BrokerWorld, user_id: uuid.UUID, address: str) -> None:
    """The user on a paying plan, one pool address in the ledger, allocated by the ledger."""
    engine = create_engine(world.owner_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(update(users).where(users.c.id == user_id).values(plan="pro"))
        async with SqlUnitOfWorkFactory(engine)() as uow:
            await uow.egress.add(ProviderAddress(address, address), world.clock.now(), SYSTEM, "test pool")
            await uow.commit()
    finally:
        await engine.dispose()
    ledger = world.service.container.egress.ledger
    # The operator's pool is that one address (a fixed pool hands out only what it holds).
    ledger.ports.provider = FixedPool([ProviderAddress(address, address)])
    allocation = await ledger.allocate(user_id, SYSTEM, "test")
    assert allocation.address is not None and allocation.address.address == address


def helper_admission(world: BrokerWorld) -> AdmitEgress:
    """The Squid helper's decision, with the vault's public keys and the service's ledger."""
    verifier = EdDsaEgressCredentialVerifier(
        public_halves(world.vault.container.keys.signing_keys),
        issuer=egress_issuer(world.settings),
        clock=lambda: world.clock.now().timestamp(),
    )
    return AdmitEgress(verifier, world.service.container.egress.bindings, world.clock)


async def test_an_owner_without_an_address_gets_egress_pending_and_no_credential(world: BrokerWorld) -> None:
    actor = await trader(world)
    connection_id = await connect(world, actor)
    r = await access(world.vault, await service_token(world), connection_id)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["egress"] is None and body["egress_pending"] is True
    [row] = await world.rows(
        select(audit_events).where(audit_events.c.action == "broker_credentials.accessed")
    )
    assert row.details["egress_pending"] is True and "egress_address" not in row.details


async def test_the_owners_address_and_a_credential_bound_to_it_stop_with_the_teardown(
    world: BrokerWorld,
) -> None:
    actor = await trader(world)
    user_id = uuid.UUID(actor.user_id)
    connection_id = await connect(world, actor)
    await give_address(world, user_id, "127.0.0.7")
    token = await service_token(world)
    r = await access(world.vault, token, connection_id)
    assert r.status_code == 200, r.text
    body = r.json()
    egress = body["egress"]
    assert body["egress_pending"] is False
    assert egress["address"] == "127.0.0.7"
    assert egress["username"] == proxy_username(user_id, "127.0.0.7", egress["credential"])
    lifetime = timedelta(seconds=world.settings.egress_credential_ttl_seconds)
    expires = world.clock.now() + lifetime
    assert abs(datetime.fromisoformat(egress["expires_at"]) - expires) <= timedelta(seconds=1)
    [row] = await world.rows(
        select(audit_events).where(audit_events.c.action == "broker_credentials.accessed")
    )
    assert row.details["egress_address"] == "127.0.0.7"
    assert egress["credential"] not in str(row.details)

    admit = helper_admission(world)
    assert await admit(egress["username"], egress["credential"]) == EgressAdmitted("127.0.0.7")
    # The vault's service token is no egress credential, and an egress credential no vault token.
    assert await admit(egress["username"], token) == EgressRefused(EgressRefusal.FORGED)
    assert (await access(world.vault, egress["credential"], connection_id)).status_code == 401

    # The credential dies with its minutes...
    world.clock.advance(lifetime.total_seconds())
    assert await admit(egress["username"], egress["credential"]) == EgressRefused(EgressRefusal.EXPIRED)
    world.clock.advance(-lifetime.total_seconds())
    # ... and at once with the binding: phase 1 of a teardown.
    engine = create_engine(world.owner_url, pool_size=1)
    try:
        async with SqlUnitOfWorkFactory(engine)() as uow:
            assert await start_teardown_of(uow, user_id, world.clock.now(), SYSTEM, "test teardown")
            await uow.commit()
    finally:
        await engine.dispose()
    assert await admit(egress["username"], egress["credential"]) == EgressRefused(EgressRefusal.UNBOUND)
    again = (await access(world.vault, token, connection_id)).json()
    assert again["egress"] is None and again["egress_pending"] is True
