"""Broker destinations through the real Squid. A CONNECT to an IP literal whose reverse name is
the broker's is refused (Squid's dstdomain would otherwise match it by a PTR record, which anyone
renting an address can set). A broker name with an AAAA record: the rendered squid.conf has IPv4
outgoing addresses only, which Squid skips for an IPv6 destination, so without the discard-prefix
line the kernel would pick the egress host's own IPv6 address, shared by every user. An IPv6-only
broker is refused, a dual-stack one is reached from the user's own IPv4 address, and a pool
address the host does not hold fails rather than fall back to IPv6."""

import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domain.egress_credentials import proxy_username
from tests.e2e.egress_gateway.squid_world import (
    POOL,
    SquidGateway,
    running_gateway,
)

BROKER_NAME = "broker.test"


def ipv6_loopback() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("this host has no IPv6 loopback (::1): nothing to leak over")


@dataclass
class Scene:
    squid: SquidGateway
    address: str
    login: tuple[str, str]


@contextlib.asynccontextmanager
async def scene(tmp_path: Path, database_url: str, pool: str, names: str) -> AsyncIterator[Scene]:
    """Squid whose hosts file gives the broker's name `names` (test-only: stands in for DNS)."""
    ipv6_loopback()
    async with running_gateway(
        database_url,
        tmp_path,
        pool=pool,
        target_host=BROKER_NAME,
        broker_hosts=("127.0.0.1", "::1"),
        hosts_text=names,
    ) as gateway:
        (user,) = gateway.paying
        address = gateway.addresses[user]
        credential = gateway.squid.credential(user, address, datetime.now(UTC) + timedelta(minutes=5))
        yield Scene(gateway.squid, address, (proxy_username(user, address, credential), credential))


async def tunnels(world: Scene) -> list[tuple[int, str]]:
    seen = []
    for _ in range(3):
        tunnel = await world.squid.connect(*world.login, target=(BROKER_NAME, world.squid.broker.port))
        seen.append((tunnel.status, tunnel.source))
        tunnel.close()
    return seen


async def test_an_ipv6_only_broker_is_refused_not_reached_from_the_hosts_shared_address(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    async with scene(tmp_path, fresh_pg_url, ",".join(POOL), f"::1 {BROKER_NAME}\n") as world:
        assert [status for status, _ in await tunnels(world)] == [503, 503, 503]
        assert world.squid.broker.sources == []


async def test_a_dual_stack_broker_is_reached_from_the_users_own_ipv4_address(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    names = f"::1 {BROKER_NAME}\n127.0.0.1 {BROKER_NAME}\n"
    async with scene(tmp_path, fresh_pg_url, ",".join(POOL), names) as world:
        assert await tunnels(world) == [(200, world.address)] * 3
        assert set(world.squid.broker.sources) == {world.address}


async def test_a_pool_address_the_host_does_not_hold_fails_rather_than_fall_back_to_ipv6(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    names = f"::1 {BROKER_NAME}\n127.0.0.1 {BROKER_NAME}\n"
    async with scene(tmp_path, fresh_pg_url, "198.51.100.7", names) as world:
        assert [status for status, _ in await tunnels(world)] == [503, 503, 503]
        assert world.squid.broker.sources == []


async def test_an_ip_literal_whose_reverse_name_is_the_brokers_is_refused(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    # Squid's hosts file answers reverse lookups too: 127.0.0.1 "is" broker.test here, as an
    # attacker's server would be with its PTR record set to the broker's name.
    async with scene(tmp_path, fresh_pg_url, ",".join(POOL), f"127.0.0.1 {BROKER_NAME}\n") as world:
        by_name = await world.squid.connect(*world.login, target=(BROKER_NAME, world.squid.broker.port))
        assert by_name.status == 200
        by_name.close()
        by_address = await world.squid.connect(*world.login, target=("127.0.0.1", world.squid.broker.port))
        assert by_address.status == 403
