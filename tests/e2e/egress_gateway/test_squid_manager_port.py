"""The cache manager's port serves Squid's cache manager and nothing else, against a real Squid
with the rendered squid.conf: a login the helper admits (it tunnels through the workers' port)
opens no tunnel through the manager port, and a request without a login is refused there outright
rather than asked to log in; the cache manager itself still answers on it."""

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.egress.squid_manager import SquidManager
from application.ports.egress_gateway import GatewayBinding
from domain.egress_credentials import proxy_username
from entrypoints.composition import Container
from tests.e2e.egress_gateway.squid_world import (
    POOL,
    SquidGateway,
    running_gateway,
)

pytestmark = pytest.mark.slow


@dataclass
class World:
    squid: SquidGateway
    container: Container
    user: uuid.UUID
    address: str

    def login(self) -> tuple[str, str]:
        credential = self.squid.credential(self.user, self.address, datetime.now(UTC) + timedelta(minutes=5))
        return proxy_username(self.user, self.address, credential), credential

    @property
    def manager_side(self) -> SquidGateway:
        """The same Squid, reached on the cache manager's port instead of the workers'."""
        return dataclasses.replace(self.squid, port=self.squid.manager_port)


@pytest.fixture
async def world(fresh_pg_url: str, tmp_path: Path) -> AsyncIterator[World]:
    async with running_gateway(fresh_pg_url, tmp_path, pool=",".join(POOL[:2])) as gateway:
        (user,) = gateway.paying
        yield World(gateway.squid, gateway.container, user, gateway.addresses[user])


async def test_a_good_login_opens_no_tunnel_through_the_manager_port(world: World) -> None:
    through_manager = await world.manager_side.connect(*world.login())
    assert through_manager.status == 403
    assert world.squid.broker.sources == []
    # The very same login tunnels through the workers' port: it was the port that was refused.
    tunnel = await world.squid.connect(*world.login())
    assert (tunnel.status, tunnel.source) == (200, world.address)
    tunnel.close()
    assert world.squid.broker.sources == [world.address]


async def test_the_manager_port_refuses_a_request_without_a_login_outright(world: World) -> None:
    # Refused, not challenged: a 407 would mean the port takes logins for tunnels.
    assert (await world.manager_side.connect(None, None)).status == 403
    reader, writer = await asyncio.open_connection("127.0.0.1", world.squid.manager_port)
    writer.write(f"GET http://127.0.0.1:{world.squid.broker.port}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    assert head.split(b" ")[1] == b"403"
    assert world.squid.broker.sources == []


async def test_the_cache_manager_still_answers_on_its_port(world: World) -> None:
    tunnel = await world.squid.connect(*world.login())
    assert tunnel.status == 200
    manager = SquidManager(f"http://127.0.0.1:{world.squid.manager_port}/squid-internal-mgr/")
    assert GatewayBinding(world.user, world.address) in await manager.open_tunnels()
    tunnel.close()
