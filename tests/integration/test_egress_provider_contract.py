"""One set of behavioural checks for every EgressProvider: the ledger may count on these whichever
provider BULWARK_EGRESS_PROVIDER names. `grows` decides which half of `acquire` applies."""

from collections.abc import AsyncIterator

import pytest

from adapters.egress.hetzner.api_client import HetznerApiClient, RetryPolicy
from adapters.egress.hetzner.primary_ips import HetznerPrimaryIpProvider
from adapters.egress.static_pool import StaticPoolProvider
from application.ports.egress_provider import EgressProvider, EgressProviderExhausted
from domain.egress_pool import parse_egress_pool
from tests.hetzner_simulator import HetznerSimulator, SimServer

TOKEN = "hc-contract-token-1"
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=1.0, action_poll=0.01)


@pytest.fixture(params=["static", "hetzner"])
async def provider(request: pytest.FixtureRequest) -> AsyncIterator[EgressProvider]:
    if request.param == "static":
        yield StaticPoolProvider(parse_egress_pool("127.0.0.2,127.0.0.3", production=False))
        return
    async with HetznerSimulator(token=TOKEN, servers=(SimServer(id=7),)) as sim:
        hetzner = HetznerPrimaryIpProvider(
            HetznerApiClient(base_url=sim.base_url, token=TOKEN, retry=FAST),
            server_id=7,
            datacenter="fsn1-dc14",
        )
        for label in ("seed-a", "seed-b"):
            await hetzner.acquire(label)
        yield hetzner


async def test_owned_lists_distinct_ipv4_addresses_with_a_provider_reference(
    provider: EgressProvider,
) -> None:
    owned = await provider.owned()
    assert len(owned) == 2
    assert len({a.address for a in owned}) == 2 and all(a.provider_ref for a in owned)
    assert all(len(a.address.split(".")) == 4 for a in owned)
    assert provider.name in ("static", "hetzner") and isinstance(provider.grows, bool)


async def test_acquire_is_idempotent_by_label_or_refused_by_a_fixed_pool(provider: EgressProvider) -> None:
    if not provider.grows:
        with pytest.raises(EgressProviderExhausted):
            await provider.acquire("user-1")
        assert len(await provider.owned()) == 2
        return
    first = await provider.acquire("user-1")
    assert await provider.acquire("user-1") == first
    assert first in await provider.owned() and len(await provider.owned()) == 3


async def test_attach_and_detach_are_idempotent(provider: EgressProvider) -> None:
    address = (await provider.owned())[0]
    await provider.attach(address)
    await provider.attach(address)
    await provider.detach(address)
    await provider.detach(address)
    assert address in await provider.owned()


async def test_release_answers_the_same_when_asked_twice_and_owned_agrees(provider: EgressProvider) -> None:
    address = (await provider.owned())[0]
    await provider.attach(address)
    released = await provider.release(address)
    assert await provider.release(address) is released
    # True: gone from the provider; False: the provider keeps it (a fixed pool).
    assert (address in await provider.owned()) is (not released)
    assert released is provider.grows  # the static pool never releases, the cloud always can
