"""The static provider: a fixed pool that lists its addresses and never creates nor releases one."""

import pytest

from adapters.egress.static_pool import StaticPoolProvider
from application.ports.egress_provider import EgressProvider, EgressProviderExhausted, ProviderAddress
from domain.egress_pool import parse_egress_pool


def provider() -> StaticPoolProvider:
    return StaticPoolProvider(parse_egress_pool("127.0.0.2,127.0.0.3", production=False))


async def test_owned_is_the_pool_with_the_address_as_its_own_reference() -> None:
    assert await provider().owned() == (
        ProviderAddress("127.0.0.2", "127.0.0.2"),
        ProviderAddress("127.0.0.3", "127.0.0.3"),
    )


async def test_it_is_a_fixed_pool_that_creates_nothing() -> None:
    static: EgressProvider = provider()
    assert (static.name, static.grows) == ("static", False)
    with pytest.raises(EgressProviderExhausted, match="creates no addresses"):
        await static.acquire("user-1")


async def test_attach_and_detach_change_nothing_and_release_gives_nothing_back() -> None:
    static = provider()
    address = ProviderAddress("127.0.0.2", "127.0.0.2")
    await static.attach(address)
    await static.detach(address)
    assert await static.release(address) is False
    assert await static.owned() == (address, ProviderAddress("127.0.0.3", "127.0.0.3"))
