"""The Squid-backed EgressGateway's confirmation rule (the adapter itself runs against a real
Squid in tests/e2e/egress_gateway): what Squid's cache manager page says, and when a detach may
be confirmed."""

import uuid
from datetime import timedelta

from adapters.egress.squid_gateway import SquidEgressGateway
from adapters.egress.squid_manager import SquidManager, admitted_in, tunnels_in
from application.ports.egress_gateway import GatewayBinding
from tests.unit.fakes import FakeClock

USER = uuid.UUID("0124cb88-6548-49af-9b9d-f752fd888838")
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
username {USER}@127.0.0.5
delay_pool 0

Connection: 0x565257b42799
uri 127.0.0.1:38999
logType TCP_TUNNEL
username someone-else
"""


def test_the_cache_manager_page_names_each_tunnels_user_and_address() -> None:
    assert tunnels_in(PAGE) == [GatewayBinding(USER, "127.0.0.5")]
    assert tunnels_in("") == []


# Squid 5.7's `mgr:username_cache`: a login still reusable, one whose check ran out, a refused one.
CACHE = f"""Cached Usernames: 4
Type            State     Check TTL Cache TTL Username\tKey
--------------- --------- --------- --------- ------------------------------
AUTH_BASIC      Ok        3         3600      {USER}@127.0.0.5\t{USER}@127.0.0.5
AUTH_BASIC      Ok        -2        3600      {USER}@127.0.0.6\t{USER}@127.0.0.6
AUTH_BASIC      Failed    3         3600      {USER}@127.0.0.7\t{USER}@127.0.0.7
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
    manager, cutter = Manager([GatewayBinding(USER, "127.0.0.5")]), Cutter(sockets=1)
    gateway = SquidEgressGateway(manager, cutter, clock, cached_answer_life=timedelta(seconds=5), settle=0)
    assert await gateway.detach(USER, "127.0.0.5") is False  # a tunnel, a socket, a fresh cache
    assert cutter.cut_addresses == ["127.0.0.5"]
    manager.tunnels, cutter.sockets = [], 0
    assert await gateway.detach(USER, "127.0.0.5") is False  # Squid may still admit a cached login
    clock.advance(seconds=5)
    cutter.sockets = 1
    assert await gateway.detach(USER, "127.0.0.5") is False  # a connection still leaves from it
    cutter.sockets = 0
    manager.tunnels = [GatewayBinding(USER, "127.0.0.6")]  # their new address is not this one
    assert await gateway.detach(USER, "127.0.0.5") is True
    assert await gateway.bindings() == [GatewayBinding(USER, "127.0.0.6")]


async def test_without_a_cutter_a_detach_waits_for_the_tunnels_to_end() -> None:
    clock = FakeClock()
    manager = Manager([GatewayBinding(USER, "127.0.0.5")])
    gateway = SquidEgressGateway(manager, None, clock, cached_answer_life=timedelta(seconds=1), settle=0)
    clock.advance(seconds=2)
    assert await gateway.detach(USER, "127.0.0.5") is False
    manager.tunnels = []
    assert await gateway.detach(USER, "127.0.0.5") is False  # the first call started the wait
    clock.advance(seconds=1)
    assert await gateway.detach(USER, "127.0.0.5") is True
