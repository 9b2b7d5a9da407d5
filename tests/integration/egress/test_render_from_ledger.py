"""With a growing provider (Hetzner) the pool is the ledger: `render-squid` names every address
the ledger holds that is not given back, so a newly acquired address gets its line, and a
released one loses it."""

from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.egress.squid_config import render_squid_conf
from domain.egress import SYSTEM
from entrypoints.composition import egress_ledger_addresses, egress_squid_config
from entrypoints.settings import Settings
from tests.egress_doubles import GrowingProvider
from tests.integration.egress.world import EgressWorld


async def test_a_growing_providers_squid_conf_names_what_the_ledger_holds(
    world_engine: AsyncEngine, storage_url: str
) -> None:
    provider = GrowingProvider(quota=5)
    world = EgressWorld.wire(world_engine, provider)
    kept, gone = await world.users(2)
    held = (await world.ledger.allocate(kept, SYSTEM, "paying")).address
    released = (await world.ledger.allocate(gone, SYSTEM, "paying")).address
    assert held is not None and released is not None
    await world.close(gone)
    await world.job()  # detached, then deleted at the provider: released

    settings = Settings(
        database_url=storage_url,
        egress_provider="hetzner",
        egress_broker_targets=("live.ctraderapi.com:5035",),
    )
    addresses = await egress_ledger_addresses(settings)
    assert addresses == [held.address]
    rendered = render_squid_conf(
        egress_squid_config(settings, "bulwark egress squid-helper", None, addresses)
    )
    assert f"tcp_outgoing_address {held.address} " in rendered
    assert released.address not in rendered
