"""The egress gateway end to end: a real Squid with the rendered squid.conf, Bulwark's helper
(`bulwark egress squid-helper`, started by Squid) reading the real ledger in PostgreSQL, the
ledger's job detaching through the Squid-backed EgressGateway, and a loopback broker that says
which source address each connection came from. Pool: 127.0.0.2-127.0.0.30."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.clock import SystemClock
from adapters.egress.credential_tokens import EdDsaEgressCredentialSigner
from adapters.storage.unit_of_work import SqlUnitOfWorkFactory
from application.egress_ledger import start_teardown_of
from application.ports.egress_gateway import GatewayBinding
from domain.egress import SYSTEM, EgressState
from domain.egress_credentials import proxy_username
from entrypoints.composition import Container, egress_gateway
from tests.e2e.egress_gateway.squid_world import (
    POOL,
    SquidGateway,
    free_port,
    running_gateway,
)

pytestmark = pytest.mark.slow


@dataclass
class World:
    squid: SquidGateway
    container: Container
    alice: uuid.UUID
    bob: uuid.UUID
    carol: uuid.UUID  # on the free plan: no address
    addresses: dict[uuid.UUID, str]

    def login(self, user: uuid.UUID) -> tuple[str, str]:
        address = self.addresses[user]
        credential = self.squid.credential(user, address, soon())
        return proxy_username(user, address, credential), credential

    async def state_of(self, address: str) -> EgressState:
        async with SqlUnitOfWorkFactory(self.container.engine)() as uow:
            found = await uow.egress.get(address)
        assert found is not None
        return found.state


def soon() -> datetime:
    return datetime.now(UTC) + timedelta(minutes=5)


@pytest.fixture
async def world(fresh_pg_url: str, tmp_path: Path) -> AsyncIterator[World]:
    async with running_gateway(fresh_pg_url, tmp_path, paying=2, free=1, helper_children=2) as gateway:
        (alice, bob), (carol,) = gateway.paying, gateway.free
        yield World(gateway.squid, gateway.container, alice, bob, carol, gateway.addresses)


async def test_each_user_leaves_from_their_own_address_and_never_from_anothers(world: World) -> None:
    alice_address, bob_address = world.addresses[world.alice], world.addresses[world.bob]
    assert alice_address != bob_address and {alice_address, bob_address} <= set(POOL)
    for _ in range(3):
        for user in (world.alice, world.bob):
            tunnel = await world.squid.connect(*world.login(user))
            assert tunnel.status == 200
            assert tunnel.source == world.addresses[user]
            tunnel.writer.write(b"ping\n")
            assert await asyncio.wait_for(tunnel.reader.readline(), 5) == b"ping\n"
            tunnel.close()
    assert world.squid.broker.sources.count(alice_address) == 3
    assert world.squid.broker.sources.count(bob_address) == 3
    assert set(world.squid.broker.sources) == {alice_address, bob_address}  # never the host's own


async def test_a_credential_cannot_select_another_users_address(world: World) -> None:
    alice, bob = world.alice, world.bob
    alice_address, bob_address = world.addresses[alice], world.addresses[bob]
    alice_credential = world.squid.credential(alice, alice_address, soon())
    bound_to_bob = world.squid.credential(alice, bob_address, soon())
    bob_credential = world.squid.credential(bob, bob_address, soon())
    attempts = [
        # Alice's credential, asking for Bob's address or naming Bob.
        (proxy_username(alice, bob_address, alice_credential), alice_credential),
        (proxy_username(bob, bob_address, alice_credential), alice_credential),
        # A correctly signed credential binding Alice to Bob's address (as a stale or buggy
        # issuer might make): the ledger binds that address to Bob, so it is refused.
        (proxy_username(alice, bob_address, bound_to_bob), bound_to_bob),
        # Alice's own username with Bob's credential.
        (proxy_username(alice, alice_address, alice_credential), bob_credential),
        # Bob's login with Alice's credential, and the login anyone could spell.
        (proxy_username(bob, bob_address, bob_credential), alice_credential),
        (f"{bob}@{bob_address}", bob_credential),
    ]
    for username, credential in attempts:
        tunnel = await world.squid.connect(username, credential)
        assert tunnel.status == 407, (username, tunnel.status)
    assert bob_address not in world.squid.broker.sources
    assert world.squid.broker.sources == []


async def test_traffic_without_an_allocation_is_refused(world: World) -> None:
    carol = world.carol
    assert await world.container.egress.bindings.live_address(carol) is None
    free_address = next(a for a in POOL if a not in world.addresses.values())
    refused = [
        await world.squid.connect(None, None),  # no login at all
        await world.squid.connect(
            proxy_username(
                carol, free_address, carols := world.squid.credential(carol, free_address, soon())
            ),
            carols,
        ),
    ]
    assert [t.status for t in refused] == [407, 407]
    # Nothing but CONNECT to the configured broker targets, whoever asks.
    username, credential = world.login(world.alice)
    elsewhere = await world.squid.connect(username, credential, target=("127.0.0.1", free_port()))
    assert elsewhere.status == 403
    reader, writer = await asyncio.open_connection("127.0.0.1", world.squid.port)
    writer.write(f"GET http://127.0.0.1:{world.squid.broker.port}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    assert head.split(b" ")[1] == b"403"
    assert world.squid.broker.sources == []


async def test_forged_and_expired_credentials_are_refused(world: World) -> None:
    alice, address = world.alice, world.addresses[world.alice]
    stranger = EdDsaEgressCredentialSigner(
        {"vk-test": Ed25519PrivateKey.generate()}, "vk-test", issuer=world.squid.signer.issuer
    )
    forged = stranger.sign(alice, address, soon())
    expired = world.squid.credential(alice, address, datetime.now(UTC) - timedelta(seconds=5))
    good = world.squid.credential(alice, address, soon())
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    for credential in (forged, expired, tampered, "not-a-credential", ""):
        assert (
            await world.squid.connect(proxy_username(alice, address, credential), credential)
        ).status == 407
    username = proxy_username(alice, address, good)
    assert (await world.squid.connect(username, "not-the-credential")).status == 407
    assert world.squid.broker.sources == []
    assert (await world.squid.connect(username, good)).status == 200  # the same login, genuine


async def test_a_torn_down_user_stops_at_once_and_their_open_tunnel_is_cut(world: World) -> None:
    alice, bob = world.alice, world.bob
    alice_address = world.addresses[alice]
    gateway = egress_gateway(world.container.settings, SystemClock())
    assert gateway is not None
    open_alice = await world.squid.connect(*world.login(alice))
    open_bob = await world.squid.connect(*world.login(bob))
    assert (open_alice.status, open_bob.status) == (200, 200)
    seen = await gateway.bindings()
    assert GatewayBinding(alice, alice_address) in seen and GatewayBinding(bob, world.addresses[bob]) in seen

    # Phase 1 begins: the ledger unbinds Alice's address.
    unbound_at = datetime.now(UTC)
    async with SqlUnitOfWorkFactory(world.container.engine)() as uow:
        assert await start_teardown_of(uow, alice, unbound_at, SYSTEM, "test teardown")
        await uow.commit()
    # A login Squid has never seen goes to the helper, which refuses it at once.
    fresh = world.squid.credential(alice, alice_address, soon() + timedelta(seconds=1))
    assert (await world.squid.connect(proxy_username(alice, alice_address, fresh), fresh)).status == 407
    # Squid may reuse its last answer for credentialsttl (1 s here): the detach is not confirmed
    # before that has passed, whatever else holds.
    assert await gateway.detach(alice, alice_address, unbound_at) is False
    await asyncio.sleep(1.2)
    assert (await world.squid.connect(*world.login(alice))).status == 407

    # The ledger's job asks the gateway until it confirms: Alice's open tunnel is cut.
    for _ in range(20):
        await world.container.egress.job()
        if await world.state_of(alice_address) is EgressState.COOLING:
            break
        await asyncio.sleep(0.3)
    assert await world.state_of(alice_address) is EgressState.COOLING
    assert await asyncio.wait_for(open_alice.reader.read(), 5) == b""  # the broker's side is gone
    assert GatewayBinding(alice, alice_address) not in await gateway.bindings()
    # Bob, on his own address, never noticed.
    open_bob.writer.write(b"still here\n")
    assert await asyncio.wait_for(open_bob.reader.readline(), 5) == b"still here\n"
    assert await world.state_of(world.addresses[bob]) is EgressState.ALLOCATED
    open_bob.close()


async def test_a_bogus_password_racing_a_genuine_login_is_never_admitted(world: World) -> None:
    """Squid's auth cache keeps one password per username and marks the entry good when any
    pending check of it succeeds: with a login anyone could spell, a bogus password sent while
    the owner's genuine login was being checked rode on its answer. An attacker knows Bob's id and
    address, not his credential, so not his login."""
    bob = world.bob
    bob_address = world.addresses[bob]
    spellable = (f"{bob}@{bob_address}", proxy_username(bob, bob_address, "a guess"))
    admitted: list[str] = []
    for attempt in range(8):
        await asyncio.sleep(1.1)  # past credentialsttl (1 s here): Bob's next login is checked again
        genuine = asyncio.create_task(world.squid.connect(*world.login(bob)))
        await asyncio.sleep(0)
        racing = [
            asyncio.create_task(world.squid.connect(name, f"bogus-{attempt}")) for name in spellable * 2
        ]
        results = await asyncio.gather(genuine, *racing)
        assert results[0].status == 200
        late = [await world.squid.connect(name, f"bogus-{attempt}") for name in spellable]
        for tunnel in (*results, *late):
            if tunnel.status == 200:
                tunnel.close()
        admitted += [t.source for t in (*results[1:], *late) if t.status == 200]
    assert admitted == []
