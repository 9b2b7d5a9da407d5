"""The Squid-backed EgressGateway's confirmation rule (the adapter itself runs against a real
Squid in tests/e2e/egress_gateway): what Squid's cache manager page says, and when a detach may
be confirmed."""

import os
import shutil
import uuid
from collections.abc import Sequence
from datetime import timedelta

import pytest

from adapters.egress.host_addresses import HostAddressesUnreadable, IpRouteHostAddresses, local_networks
from adapters.egress.squid_gateway import ANSWER_IN_FLIGHT, SquidEgressGateway
from adapters.egress.squid_manager import SquidManager, admitted_in, tunnels_in
from application.ports.egress_gateway import EgressGatewayUnavailable, GatewayBinding
from tests.unit.fakes import FakeClock

USER = uuid.UUID("0124cb88-6548-49af-9b9d-f752fd888838")
FP = "AbCdEfGhIjKlMnOpQrSt-_"  # a credential's fingerprint (22 base64url characters)
# Squid 5.7's `mgr:active_requests`, as the e2e test's Squid printed it (addresses shortened).
PAGE = f"""Connection: 0x565257b71ac8
\tFD 17, read 113, wrote 0
\tremote: 127.0.0.1:40630
\tlocal: 127.0.0.1:38128
uri http://bulwark-egress:3129/squid-internal-mgr/active_requests
logType TCP_MISS
username -
delay_pool 0

Connection: 0x565257b42738
\tFD 12, read 100, wrote 54
uri 127.0.0.1:38999
logType TCP_TUNNEL
username {USER}@127.0.0.5~{FP}
delay_pool 0

Connection: 0x565257b42799
uri 127.0.0.1:38999
logType TCP_TUNNEL
username someone-else
"""


def test_the_cache_manager_page_names_each_tunnels_user_and_address() -> None:
    assert tunnels_in(PAGE) == [GatewayBinding(USER, "127.0.0.5")]
    assert tunnels_in("") == []
    # A tunnel opened before the login carried the credential's fingerprint still counts.
    legacy = PAGE.replace(f"{USER}@127.0.0.5~{FP}", f"{USER}@127.0.0.5")
    assert tunnels_in(legacy) == [GatewayBinding(USER, "127.0.0.5")]


# Squid 5.7's `mgr:username_cache`: a login still reusable, one whose check ran out, a refused one.
CACHE = f"""Cached Usernames: 4
Type            State     Check TTL Cache TTL Username\tKey
--------------- --------- --------- --------- ------------------------------
AUTH_BASIC      Ok        3         3600      {USER}@127.0.0.5~{FP}\t{USER}@127.0.0.5~{FP}
AUTH_BASIC      Ok        -2        3600      {USER}@127.0.0.6~{FP}\t{USER}@127.0.0.6~{FP}
AUTH_BASIC      Failed    3         3600      {USER}@127.0.0.7~{FP}\t{USER}@127.0.0.7~{FP}
AUTH_BASIC      Ok        3         3600      alice\talice
"""


def test_logins_squid_would_admit_from_its_cache_count_as_bindings() -> None:
    assert admitted_in(CACHE) == [GatewayBinding(USER, "127.0.0.5")]


class Manager(SquidManager):
    def __init__(self, open_tunnels: list[GatewayBinding]) -> None:
        self.tunnels = open_tunnels

    async def open_tunnels(self) -> list[GatewayBinding]:
        return list(self.tunnels)

    async def admitted_logins(self) -> list[GatewayBinding]:
        return []


class Cutter:
    def __init__(self, sockets: int) -> None:
        self.sockets = sockets
        self.cut_addresses: list[str] = []

    async def cut(self, address: str) -> None:
        self.cut_addresses.append(address)

    async def open_from(self, address: str) -> int:
        return self.sockets


async def test_a_detach_is_confirmed_only_with_no_tunnel_no_socket_and_squids_cache_expired() -> None:
    clock = FakeClock()
    unbound_at = clock.now()
    manager, cutter = Manager([GatewayBinding(USER, "127.0.0.5")]), Cutter(sockets=1)
    gateway = SquidEgressGateway(manager, cutter, clock, cached_answer_life=timedelta(seconds=5), settle=0)
    assert await gateway.detach(USER, "127.0.0.5", unbound_at) is False  # a tunnel, a socket, a fresh cache
    assert cutter.cut_addresses == ["127.0.0.5"]
    manager.tunnels, cutter.sockets = [], 0
    clock.advance(seconds=5)
    # Squid may still admit a login whose answer was read just before the unbinding.
    assert await gateway.detach(USER, "127.0.0.5", unbound_at) is False
    clock.advance(ANSWER_IN_FLIGHT)
    cutter.sockets = 1
    assert await gateway.detach(USER, "127.0.0.5", unbound_at) is False  # a connection still leaves from it
    cutter.sockets = 0
    manager.tunnels = [GatewayBinding(USER, "127.0.0.6")]  # their new address is not this one
    assert await gateway.detach(USER, "127.0.0.5", unbound_at) is True
    assert await gateway.bindings() == [GatewayBinding(USER, "127.0.0.6")]


async def test_without_a_cutter_a_detach_waits_for_the_tunnels_to_end() -> None:
    clock = FakeClock()
    manager = Manager([GatewayBinding(USER, "127.0.0.5")])
    gateway = SquidEgressGateway(manager, None, clock, cached_answer_life=timedelta(seconds=1), settle=0)
    unbound_at = clock.advance(seconds=2)
    assert await gateway.detach(USER, "127.0.0.5", unbound_at) is False
    manager.tunnels = []
    assert await gateway.detach(USER, "127.0.0.5", unbound_at) is False  # Squid's cache may still admit
    clock.advance(timedelta(seconds=1) + ANSWER_IN_FLIGHT)
    assert await gateway.detach(USER, "127.0.0.5", unbound_at) is True


async def test_a_detach_counts_from_the_ledgers_unbinding_so_a_new_process_confirms_too() -> None:
    # `bulwark jobs run` from a timer is a new process (a new gateway object) every run.
    clock = FakeClock()
    unbound_at = clock.now()
    clock.advance(seconds=1 + ANSWER_IN_FLIGHT.total_seconds())
    fresh = SquidEgressGateway(Manager([]), None, clock, cached_answer_life=timedelta(seconds=1), settle=0)
    assert await fresh.detach(USER, "127.0.0.5", unbound_at) is True


class Host:
    def __init__(self, local: set[str], fails: bool = False) -> None:
        self.local, self.fails = local, fails

    async def not_local(self, addresses: Sequence[str]) -> list[str]:
        if self.fails:
            raise HostAddressesUnreadable("ip: command not found")
        return [a for a in addresses if a not in self.local]


async def test_an_address_outside_squids_pool_or_not_on_the_host_cannot_be_sent_from() -> None:
    host = Host({"127.0.0.5", "127.0.0.7"})
    gateway = SquidEgressGateway(
        Manager([]), None, FakeClock(), timedelta(seconds=5), pool=("127.0.0.5", "127.0.0.6"), host=host
    )
    # .5: rendered and held; .6: rendered, not held; .7: held, but squid.conf has no line for it.
    assert await gateway.unbindable(["127.0.0.5", "127.0.0.6", "127.0.0.7"]) == ["127.0.0.6", "127.0.0.7"]
    host.fails = True
    with pytest.raises(EgressGatewayUnavailable, match="egress host"):
        await gateway.unbindable(["127.0.0.5"])


def test_the_local_routing_table_names_single_addresses_and_whole_blocks() -> None:
    # `ip -4 -j route show table local` on a host with lo and a routed /29 made local.
    listing = (
        '[{"type":"local","dst":"127.0.0.0/8","dev":"lo"},{"type":"broadcast","dst":"127.255.255.255"},'
        '{"type":"local","dst":"5.9.10.0/29","dev":"eth0"},{"type":"local","dst":"88.99.1.7","dev":"eth0"}]'
    )
    networks = local_networks(listing)
    assert [str(n) for n in networks] == ["127.0.0.0/8", "5.9.10.0/29", "88.99.1.7/32"]
    with pytest.raises(HostAddressesUnreadable):
        local_networks("not json")


async def test_this_hosts_own_routing_table_holds_loopback_and_not_a_documentation_address() -> None:
    if shutil.which("ip") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("iproute2's `ip` is missing: the egress host needs it")
        pytest.skip("iproute2's `ip` is not installed here")
    assert await IpRouteHostAddresses().not_local(["127.0.0.5", "198.51.100.7"]) == ["198.51.100.7"]


async def test_with_squid_conf_rendered_from_the_ledger_only_the_host_is_checked() -> None:
    gateway = SquidEgressGateway(
        Manager([]), None, FakeClock(), timedelta(seconds=5), pool=None, host=Host({"5.75.0.2"})
    )
    assert await gateway.unbindable(["5.75.0.2", "5.75.0.3"]) == ["5.75.0.3"]
