"""A gateway that cannot tell is never read as a gateway that confirms: Squid's cache manager
answering anything but 200 (a real HTTP server on loopback stands in for it) and `ss` failing (a
fake `ss` first on PATH) both make the Squid-backed gateway raise EgressGatewayUnavailable, and the
egress job then holds the teardown back in `draining` (both storage backends) instead of taking
an error page for "no tunnels" or a failed listing for "no sockets"."""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path

import pytest

from adapters.egress.squid_gateway import SquidEgressGateway
from adapters.egress.squid_manager import SquidManager
from adapters.egress.tunnel_cutter import SsTunnelCutter, TunnelCutFailed
from application.ports.egress_gateway import EgressGatewayUnavailable, GatewayBinding
from domain.egress import SYSTEM, EgressState
from tests.integration.egress.world import EgressWorld
from tests.unit.fakes import FakeClock

USER = uuid.UUID("0124cb88-6548-49af-9b9d-f752fd888838")
ADDRESS = "127.0.0.5"
LONG_AFTER = timedelta(hours=1)  # Squid's cached answers have long expired by then
# What Squid answers on its error pages: nothing in it names a tunnel or a login.
ERROR_PAGE = "<html><body><h1>ERROR</h1><p>The requested URL could not be retrieved</p></body></html>\n"
# `mgr:active_requests` with one tunnel of USER's (as Squid 5.7 prints it, shortened).
# Squid lists the manager's own request too; a page without it is not Squid's.
NO_TUNNEL = "Connection: 0x5651\nuri http://127.0.0.1:3129/squid-internal-mgr/active_requests\nusername -\n"
ONE_TUNNEL = NO_TUNNEL + (
    "\nConnection: 0x5652\n\tFD 12, read 100, wrote 54\nlogType TCP_TUNNEL\n"
    f"username {USER}@{ADDRESS}~AbCdEfGhIjKlMnOpQrSt-_\n"
)
NO_LOGIN = "Cached Usernames: 0\nType            State     Check TTL Cache TTL Username\tKey\n"


@dataclass
class CacheManagerDouble:
    """A loopback HTTP server in the place of Squid's cache manager: answers each page (the last
    path segment) with the status and body set for it."""

    answers: dict[str, tuple[int, str]]
    asked: list[str] = field(default_factory=list)
    server: asyncio.Server | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/squid-internal-mgr/"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            page = head.split(b" ", 2)[1].decode().rsplit("/", 1)[-1]
            self.asked.append(page)
            status, body = self.answers.get(page, (404, ERROR_PAGE))
            data = body.encode()
            writer.write(
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: text/html\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def started(answers: dict[str, tuple[int, str]]) -> CacheManagerDouble:
    manager = CacheManagerDouble(answers)
    await manager.start()
    return manager


@pytest.fixture
async def healthy_manager() -> AsyncIterator[CacheManagerDouble]:
    """Squid's cache manager listing no tunnel and no cached login."""
    manager = await started({"active_requests": (200, NO_TUNNEL), "username_cache": (200, NO_LOGIN)})
    yield manager
    await manager.stop()


def fake_ss(directory: Path, script: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An executable `ss` in `directory`, first on PATH for the cutter's subprocess."""
    directory.mkdir(exist_ok=True)
    ss = directory / "ss"
    ss.write_text("#!/bin/sh\n" + script)
    ss.chmod(0o755)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ.get('PATH', '')}")
    return ss


def failing_ss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What iproute2 says without CAP_NET_ADMIN (or without the kernel's socket-destroy).
    fake_ss(
        tmp_path / "bin",
        'echo "SOCK_DESTROY answers: Operation not permitted" >&2\nexit 1\n',
        monkeypatch,
    )


# -- the cache manager ---------------------------------------------------------------------------


async def test_the_cache_managers_pages_are_read_when_it_answers_200() -> None:
    manager = await started({"active_requests": (200, ONE_TUNNEL), "username_cache": (200, NO_LOGIN)})
    try:
        assert await SquidManager(manager.url).open_tunnels() == [GatewayBinding(USER, ADDRESS)]
        assert await SquidManager(manager.url).admitted_logins() == []
        assert manager.asked == ["active_requests", "username_cache"]
    finally:
        await manager.stop()


@pytest.mark.parametrize("status", [302, 401, 403, 404, 500, 503])
async def test_a_cache_manager_answering_other_than_200_is_unavailable_not_empty(status: int) -> None:
    manager = await started({"active_requests": (status, ERROR_PAGE), "username_cache": (status, ERROR_PAGE)})
    try:
        with pytest.raises(EgressGatewayUnavailable, match=str(status)):
            await SquidManager(manager.url).open_tunnels()
        with pytest.raises(EgressGatewayUnavailable, match=str(status)):
            await SquidManager(manager.url).admitted_logins()
        clock = FakeClock()
        unbound_at = clock.now()
        clock.advance(LONG_AFTER)
        gateway = SquidEgressGateway(SquidManager(manager.url), None, clock, timedelta(seconds=5), settle=0)
        with pytest.raises(EgressGatewayUnavailable):
            await gateway.bindings()
        # Without a word from Squid no detach is confirmed, however long ago the ledger unbound.
        with pytest.raises(EgressGatewayUnavailable):
            await gateway.detach(USER, ADDRESS, unbound_at)
    finally:
        await manager.stop()


async def test_one_page_failing_is_enough_to_be_unavailable() -> None:
    manager = await started({"active_requests": (200, NO_TUNNEL), "username_cache": (500, ERROR_PAGE)})
    try:
        gateway = SquidEgressGateway(SquidManager(manager.url), None, FakeClock(), timedelta(seconds=5))
        with pytest.raises(EgressGatewayUnavailable, match="500"):
            await gateway.bindings()
    finally:
        await manager.stop()


# -- cutting tunnels with `ss -K` ----------------------------------------------------------------


async def test_the_cutter_destroys_every_tcp_socket_from_the_address_and_counts_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = tmp_path / "calls"
    fake_ss(
        tmp_path / "bin",
        f'echo "$@" >> {calls}\n'
        'case "$*" in *established*) echo "ESTAB 0 0 127.0.0.5:41000 127.0.0.1:5035";; esac\n',
        monkeypatch,
    )
    cutter = SsTunnelCutter()
    await cutter.cut(ADDRESS)
    assert await cutter.open_from(ADDRESS) == 1
    assert calls.read_text().splitlines() == [
        f"-K -t -n src {ADDRESS}",
        f"-t -n -H state established src {ADDRESS}",
    ]


async def test_ss_failing_is_a_failed_cut_and_a_failed_count_never_no_sockets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing_ss(tmp_path, monkeypatch)
    with pytest.raises(TunnelCutFailed, match="Operation not permitted"):
        await SsTunnelCutter().cut(ADDRESS)
    with pytest.raises(TunnelCutFailed, match="Operation not permitted"):
        await SsTunnelCutter().open_from(ADDRESS)


async def test_a_cut_that_failed_makes_the_detach_unavailable_not_confirmed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, healthy_manager: CacheManagerDouble
) -> None:
    failing_ss(tmp_path, monkeypatch)
    clock = FakeClock()
    unbound_at = clock.now()
    clock.advance(LONG_AFTER)
    gateway = SquidEgressGateway(
        SquidManager(healthy_manager.url), SsTunnelCutter(), clock, timedelta(seconds=5), settle=0
    )
    with pytest.raises(EgressGatewayUnavailable, match="Operation not permitted"):
        await gateway.detach(USER, ADDRESS, unbound_at)


async def test_a_count_that_failed_or_a_missing_ss_makes_the_detach_unavailable_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, healthy_manager: CacheManagerDouble
) -> None:
    # The cut succeeds, the count of what is still open fails: unconfirmable, so unavailable
    # (the job holds this teardown back and goes on with the others).
    fake_ss(tmp_path / "bin", 'case "$*" in *established*) echo "no" >&2; exit 1;; esac\n', monkeypatch)
    clock = FakeClock()
    unbound_at = clock.now()
    clock.advance(LONG_AFTER)
    gateway = SquidEgressGateway(
        SquidManager(healthy_manager.url), SsTunnelCutter(), clock, timedelta(seconds=5), settle=0
    )
    with pytest.raises(EgressGatewayUnavailable):
        await gateway.detach(USER, ADDRESS, unbound_at)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # iproute2 not installed at all
    with pytest.raises(EgressGatewayUnavailable):
        await gateway.detach(USER, ADDRESS, unbound_at)


# -- the job holds the teardown back -------------------------------------------------------------


async def draining_address(world: EgressWorld) -> str:
    """A paying user's address, torn down by the job after their account closed."""
    (user,) = await world.users(1)
    allocation = await world.ledger.allocate(user, SYSTEM, "paying")
    assert allocation.address is not None
    await world.close(user)
    report = await world.job()
    assert report.teardowns_started == 1
    address = allocation.address.address
    assert (await world.ledger_rows())[address] == (EgressState.DRAINING, user)
    return address


async def assert_held_back_in_draining(world: EgressWorld, address: str) -> None:
    # Long after the unbinding: only the gateway's word is missing for a confirmation.
    world.clock.advance(LONG_AFTER)
    report = await world.job()
    assert report.detached == 0
    assert any(why.startswith(f"{address}: gateway unavailable") for why in report.held_back), report
    assert (await world.ledger_rows())[address][0] is EgressState.DRAINING


async def test_the_job_holds_a_teardown_back_while_the_cache_manager_answers_an_error(
    world: EgressWorld,
) -> None:
    manager = await started({"active_requests": (404, ERROR_PAGE), "username_cache": (404, ERROR_PAGE)})
    try:
        world.ports.gateway = SquidEgressGateway(
            SquidManager(manager.url), None, world.clock, timedelta(seconds=5), settle=0
        )
        address = await draining_address(world)
        await assert_held_back_in_draining(world, address)
        assert "active_requests" in manager.asked
    finally:
        await manager.stop()


async def test_the_job_holds_a_teardown_back_while_ss_cannot_cut(
    world: EgressWorld,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    healthy_manager: CacheManagerDouble,
) -> None:
    failing_ss(tmp_path, monkeypatch)
    world.ports.gateway = SquidEgressGateway(
        SquidManager(healthy_manager.url), SsTunnelCutter(), world.clock, timedelta(seconds=5), settle=0
    )
    address = await draining_address(world)
    await assert_held_back_in_draining(world, address)


@pytest.mark.parametrize("page", ["", "<html>It works!</html>\n", ERROR_PAGE])
async def test_a_200_that_is_not_squids_page_is_unavailable_not_no_tunnels(page: str) -> None:
    # Another server on the port, or Squid answering an error with 200: never "nothing open".
    manager = await started({"active_requests": (200, page), "username_cache": (200, page)})
    try:
        with pytest.raises(EgressGatewayUnavailable, match="not Squid's"):
            await SquidManager(manager.url).open_tunnels()
        with pytest.raises(EgressGatewayUnavailable, match="not Squid's"):
            await SquidManager(manager.url).admitted_logins()
    finally:
        await manager.stop()
