"""The bridge simulator (tests/bridge_simulator.py) against `bulwark serve` run as an operator runs
it -- a subprocess listening on a loopback TCP port, configured from the environment -- on both
backends: embedded (SQLite, in-process limiter) and PostgreSQL + Redis (two granian workers, as
the service's unprivileged role). The org member signs up through the public API (the
verification mail arrives over SMTP at an aiosmtpd server); the EA reaches the server through a
TCP relay that can lose an answer or stand in for a load balancer's 503, so its retries are
exercised on a real socket."""

import asyncio
import email
import email.policy
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import redis.asyncio as aioredis
from aiosmtpd.controller import Controller
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.database import create_engine
from adapters.storage.tables import bridge_commands, bridge_deals, bridge_positions, bridges
from tests.bridge_simulator import ExpertAdvisor, NotAllowListed, Terminal, encode
from tests.e2e.conftest import FRONTEND
from tests.e2e.identity_helpers import PASSWORD, unique_email
from tests.e2e.test_cli_serve import BULWARK, clean_env, free_port
from tests.e2e.test_mail_smtp import Inbox
from tests.e2e.test_orgs_and_roles import claims

READY_WITHIN = 30.0
VERIFY_LINK = re.compile(rf"{re.escape(FRONTEND)}/verify-email\?token=([A-Za-z0-9_-]+)")


# -- the server ------------------------------------------------------------------------------------


@dataclass
class Served:
    url: str
    owner: AsyncEngine  # the tables' owner: reads what was stored, past row-level security
    inbox: Inbox
    log: Path
    ids: list[str] = field(default_factory=list)  # orgs and bridges made (their Redis entries go)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, server_hostname="mx.test")
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def bulwark(args: list[str], cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run([str(BULWARK), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


async def wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_WITHIN
    async with httpx.AsyncClient(base_url=url, timeout=2) as probe:
        while time.monotonic() < deadline:
            assert process.poll() is None, f"bulwark serve exited:\n{log.read_text()}"
            try:
                if (await probe.get("/healthz/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"bulwark serve not ready within {READY_WITHIN:.0f} s:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Backend:
    env: dict[str, str]  # the BULWARK_* variables of this backend
    owner_url: str
    redis_url: str | None = None


@pytest.fixture(
    params=[
        pytest.param("embedded", marks=pytest.mark.slow),
        pytest.param("postgres+redis", marks=[pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Synchronous, as the database fixtures it asks for run their own event loop."""
    if request.param == "embedded":
        # `serve` migrates the SQLite file itself.
        return Backend({}, f"sqlite+aiosqlite:///{tmp_path / 'data' / 'bulwark.sqlite3'}")
    vault_keys = tmp_path / "vault.json"
    bulwark(["keys", "init", "--vault", str(vault_keys)], tmp_path, clean_env())
    # The vault runs apart (its key file set), so `serve` starts two real granian workers. The
    # served Redis namespace is fixed (`bulwark`), so runs share its per-address counters for
    # 127.0.0.1: the sign-up and login limits are raised to keep the test repeatable.
    env = {
        "BULWARK_DATABASE_URL": str(request.getfixturevalue("app_pg_url")),
        "BULWARK_REDIS_URL": str(request.getfixturevalue("redis_url")),
        "BULWARK_WORKERS": "2",
        "BULWARK_VAULT_KEYS_FILE": str(vault_keys),
        "BULWARK_REGISTER_LIMIT_PER_IP": "1000/60",
        "BULWARK_LOGIN_LIMIT_PER_IP": "1000/60",
    }
    return Backend(env, str(request.getfixturevalue("fresh_pg_url")), env["BULWARK_REDIS_URL"])


@pytest.fixture
async def served(backend: Backend, tmp_path: Path, smtp: tuple[Inbox, int]) -> AsyncIterator[Served]:
    inbox, smtp_port = smtp
    port = free_port()
    env = clean_env(
        BULWARK_DATA_DIR=str(tmp_path / "data"),
        BULWARK_HOST="127.0.0.1",
        BULWARK_PORT=str(port),
        BULWARK_VAULT_PORT=str(free_port()),
        BULWARK_FRONTEND_URL=FRONTEND,
        BULWARK_SMTP_HOST="127.0.0.1",
        BULWARK_SMTP_PORT=str(smtp_port),
        BULWARK_SMTP_STARTTLS="false",
        BULWARK_ARGON2_MEMORY_KIB="19456",  # OWASP's floor: sign-up and login stay quick
        BULWARK_LOG_LEVEL="WARNING",
        # Last-seen marks are written in batches; often here, so the rows can be read soon.
        BULWARK_BRIDGE_SIGHTINGS_FLUSH_SECONDS="0.05",
        **backend.env,
    )
    owner_url = backend.owner_url
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BULWARK), "serve"], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    owner = None
    served = None
    try:
        await wait_ready(process, url, log)
        owner = create_engine(owner_url, pool_size=2)
        served = Served(url, owner, inbox, log)
        yield served
        # While serving, nothing went wrong (shutdown's own noise is not this test's subject).
        assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        if owner is not None:
            await owner.dispose()
        stop(process)
        if backend.redis_url and served and served.ids:
            await forget(backend.redis_url, served.ids)


async def forget(redis_url: str, ids: list[str]) -> None:
    """The run's entries in the served (fixed) namespace's version maps, which never expire;
    its counters and cached permissions expire by themselves."""
    client = aioredis.from_url(redis_url)
    try:
        for versions in ("bulwark:authz:versions", "bulwark:bridges:authz:versions"):
            await client.hdel(versions, *ids)
    finally:
        await client.aclose()


# -- the network between the EA and the server ----------------------------------------------------


@dataclass
class Relay:
    """A TCP relay in front of the server, one connection per request (the EA's client keeps
    none alive). It records every request head that crossed it, and can be told to lose the next
    answer (the server did the work; the EA sees its connection drop) or to answer the next
    request itself with a 503 and `Retry-After`, as a load balancer would."""

    upstream_port: int
    heads: list[bytes] = field(default_factory=list)
    lose_answers: int = 0
    unavailable: int = 0
    port: int = 0

    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._accepted, "127.0.0.1", 0)
        self.port = int(server.sockets[0].getsockname()[1])
        return server

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._connection(reader, writer))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
            body = await reader.readexactly(int(length.group(1))) if length else b""
            self.heads.append(head)
            if self.unavailable:
                self.unavailable -= 1
                writer.write(
                    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
                await writer.drain()
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            try:
                up_writer.write(head + body)
                await up_writer.drain()
                first = await up_reader.read(65536)
                if self.lose_answers:
                    self.lose_answers -= 1
                    return  # the answer was on its way: the EA never sees it
                writer.write(first)
                await writer.drain()
                # The rest of the answer, until either side hangs up (the EA keeps no connection).
                pumps = [
                    asyncio.create_task(pipe(up_reader, writer)),
                    asyncio.create_task(pipe(reader, up_writer)),
                ]
                _, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
                for pump in pending:
                    pump.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            finally:
                up_writer.close()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    while data := await source.read(65536):
        sink.write(data)
        await sink.drain()


@pytest.fixture
async def relay(served: Served) -> AsyncIterator[Relay]:
    relay = Relay(int(httpx.URL(served.url).port or 0))
    server = await relay.start()
    try:
        yield relay
    finally:
        server.close()
        await relay.close()
        await server.wait_closed()


def ea_client(port: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        limits=httpx.Limits(max_keepalive_connections=0),
        timeout=10,
    )


# -- the org member, through the public API --------------------------------------------------------


@dataclass
class Member:
    access: str

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.access}"}

    @property
    def org_id(self) -> str:
        return str(claims(self.access)["org"])


async def verification_token(inbox: Inbox, address: str) -> str:
    for _ in range(100):
        for envelope in inbox.envelopes:
            if envelope.rcpt_tos == [address]:
                message = email.message_from_bytes(envelope.content, policy=email.policy.default)
                body = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
                match = VERIFY_LINK.search(body)
                assert match, body
                return match.group(1)
        await asyncio.sleep(0.05)
    raise AssertionError(f"no verification mail to {address}")


async def sign_up(browser: httpx.AsyncClient, inbox: Inbox) -> Member:
    address = unique_email("desk")
    r = await browser.post(
        "/api/v1/auth/register", json={"email": address, "password": PASSWORD, "display_name": "Desk"}
    )
    assert r.status_code == 202, r.text
    token = await verification_token(inbox, address)
    r = await browser.post("/api/v1/auth/verify-email", json={"token": token})
    assert r.status_code == 200, r.text
    r = await browser.post("/api/v1/auth/login", json={"email": address, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return Member(r.json()["access_token"])


# -- what the EA reports ---------------------------------------------------------------------------


def deal(ticket: int) -> dict[str, Any]:
    return {
        "ticket": ticket,
        "time": "2026-12-04T06:00:00Z",
        "symbol": "EURUSD",
        "type": "buy" if ticket % 2 else "sell",
        "entry": "in",
        "volume": 0.1,
        "price": 1.0842,
        "profit": 1.5,
        "order": ticket + 100_000,
    }


def position(ticket: int, price_current: float) -> dict[str, Any]:
    return {
        "ticket": ticket,
        "time": "2026-12-04T06:00:00Z",
        "symbol": "XAUUSD",
        "type": "sell",
        "volume": 0.5,
        "price_open": 2650.1,
        "price_current": price_current,
    }


async def stored(owner: AsyncEngine, table: Any, bridge_id: str) -> list[Any]:
    column = table.c.id if table is bridges else table.c.bridge_id
    async with owner.connect() as conn:
        return list(await conn.execute(select(table).where(column == UUID(bridge_id))))


async def count(owner: AsyncEngine, table: Any, bridge_id: str) -> int:
    query = select(func.count()).select_from(table).where(table.c.bridge_id == UUID(bridge_id))
    async with owner.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


# -- the tests -------------------------------------------------------------------------------------


async def test_an_ea_over_tcp_binds_beats_reports_and_takes_a_command_once(
    served: Served, relay: Relay
) -> None:
    async with httpx.AsyncClient(base_url=served.url, headers={"origin": FRONTEND}, timeout=10) as browser:
        member = await sign_up(browser, served.inbox)
        r = await browser.post(
            f"/api/v1/orgs/{member.org_id}/bridges", json={"name": "Desk EA"}, headers=member.headers
        )
        assert r.status_code == 201, r.text
        key, bridge_id = r.json()["key"], r.json()["bridge"]["id"]
        served.ids += [member.org_id, bridge_id]
        bridge_path = f"/api/v1/orgs/{member.org_id}/bridges/{bridge_id}"
        r = await browser.post(
            f"{bridge_path}/commands",
            json={"kind": "pause_trading", "payload": {"reason": "drawdown"}},
            headers=member.headers,
        )
        assert r.status_code == 201, r.text
        command = r.json()

        async with ea_client(relay.port) as client:
            advisor = ExpertAdvisor(client, key, Terminal())
            first_deals, second_deals = advisor.queue_deals(deal(t) for t in range(1, 601))
            advisor.queue_positions([position(77, 2649.0), position(78, 2651.2)])
            ticks = await advisor.run_timer(ticks=4, interval=0.25)

            # Hello, then four heartbeats on the timer; the first tick sent the batches (500 + 100
            # deals, two positions) and took the queued command, which the later ticks never saw.
            assert [t.heartbeat for t in ticks] == [200] * 4
            assert (ticks[0].deals_accepted, ticks[0].positions_accepted) == (600, 2)
            assert [c["id"] for c in ticks[0].commands] == [command["id"]]
            assert all(t.commands == [] and t.deals_accepted == 0 for t in ticks[1:])
            assert advisor.executed == ticks[0].commands and advisor.terminal.paused
            assert ticks[0].commands[0]["payload"] == {"reason": "drawdown"}
            assert advisor.cursor == command["seq"] and not advisor.pending_batches
            polls = [a.url for a in advisor.attempts if "/commands?" in a.url]
            assert polls[0].endswith("?after=0") and all(
                p.endswith(f"?after={command['seq']}") for p in polls[1:]
            )
            [row] = await stored(served.owner, bridge_commands, bridge_id)
            assert row.delivered_at is not None and row.acked_at is not None
            r = await advisor.request("POST", f"commands/{command['id']}/ack")
            assert r.status_code == 404  # acknowledged once; a second ack finds nothing

            # The same deal batch sent again (as after a lost answer): the same answer, nothing new.
            received = {d.ticket: d.received_at for d in await stored(served.owner, bridge_deals, bridge_id)}
            assert len(received) == 600
            again = await advisor.request("POST", "deals", first_deals)
            assert again.status_code == 200 and again.json() == {"accepted": 500}, again.text
            assert (await advisor.request("POST", "deals", second_deals)).json() == {"accepted": 100}
            after = {d.ticket: d.received_at for d in await stored(served.owner, bridge_deals, bridge_id)}
            assert after == received

            # An answer lost on the wire: the EA resends the very same bytes, the server keeps one.
            sent = len(advisor.attempts)
            [late] = advisor.queue_deals(deal(t) for t in range(1000, 1010))
            relay.lose_answers = 1
            assert await advisor.flush() == (10, 0)
            resent = advisor.attempts[sent:]
            assert [a.body for a in resent] == [late, late] and relay.lose_answers == 0
            assert await count(served.owner, bridge_deals, bridge_id) == 610

            # A 503 with Retry-After: 1 from in front of the server: waited for, then the same body.
            sent = len(advisor.attempts)
            relay.unavailable = 1
            started = time.monotonic()
            assert (await advisor.beat()).status_code == 200
            assert time.monotonic() - started >= 1.0
            assert len({a.body for a in advisor.attempts[sent:]}) == 1 and len(advisor.attempts) == sent + 2

            # Positions: each ticket keeps its last report.
            advisor.queue_positions([position(77, 2640.5)])
            assert await advisor.flush() == (0, 1)
            kept = {
                p.ticket: p.price_current for p in await stored(served.owner, bridge_positions, bridge_id)
            }
            assert kept[77] == 2640.5

        # Only WebRequest's headers crossed the wire, and only to the bridge API.
        assert len(relay.heads) == len(advisor.attempts)
        for head in relay.heads:
            lines = head.decode("latin-1").split("\r\n")
            assert lines[0].split(" ")[1].startswith("/api/bridge/v1/"), lines[0]
            names = {
                line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip() for line in lines[1:] if line
            }
            assert names["x-api-key"] == key and names["user-agent"].startswith("MetaTrader 5 Terminal/")
            assert not {"cookie", "origin", "authorization", "referer"} & names.keys(), names
            if lines[0].startswith("POST") and "/ack " not in lines[0]:
                assert names["content-type"] == "application/json"

        # The org sees its bridge online, bound to the EA's account, the pause reported back.
        r = await browser.get(bridge_path, headers=member.headers)
        assert r.status_code == 200, r.text
        shown = r.json()
        assert shown["status"] == "online" and shown["account"] == {
            "login": 5_012_345,
            "server": "ICMarketsSC-Demo",
            "company": "Raw Trading Ltd",
        }
        assert shown["terminal_build"] == 4755 and shown["ea_version"] == "1.4.2"
        assert shown["last_ip"] == "127.0.0.1" and shown["last_seen_at"]
        for _ in range(40):  # the last heartbeat's mark lands with the next batch (every 0.05 s)
            [bridge_row] = await stored(served.owner, bridges, bridge_id)
            if bridge_row.last_heartbeat["trade_allowed"] is False:
                break
            await asyncio.sleep(0.05)
        assert bridge_row.last_heartbeat["trade_allowed"] is False  # beaten after the pause


async def test_the_ea_calls_nothing_outside_its_allow_listed_url() -> None:
    called: list[httpx.Request] = []

    def trap(request: httpx.Request) -> httpx.Response:
        called.append(request)
        return httpx.Response(599)

    with pytest.raises(NotAllowListed):
        ExpertAdvisor(httpx.AsyncClient(transport=httpx.MockTransport(trap)), "bwk_key")
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(trap), base_url="https://bridge.example.com"
    ) as client:
        advisor = ExpertAdvisor(client, "bwk_key")
        for path in (
            "https://evil.example/api/bridge/v1/hello",
            "//evil.example/api/bridge/v1/hello",
            "/api/v1/me",
            "../../v1/me",
            "hello/../../../v1/orgs",
            "hello#x",
            "hello?next=https://evil.example",
            "",
        ):
            with pytest.raises(NotAllowListed):
                await advisor.request("POST", path, encode({}))
        assert called == []
        assert advisor.url("commands?after=7") == "https://bridge.example.com/api/bridge/v1/commands?after=7"
