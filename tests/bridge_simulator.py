"""An MT5 Expert Advisor as the bridge API sees it, behaving as MQL5 code built on `WebRequest`
would:

- it only calls URLs under its allow-listed base URL (MT5 refuses any other: Tools > Options >
  Expert Advisors > "Allow WebRequest for listed URL"), so the base URL must be set and every path
  it is given is relative to the bridge API;
- WebRequest-style headers: the key in `X-API-Key`, `Content-Type: application/json`, a MetaTrader
  `User-Agent`; never a cookie, an `Origin` or an `Authorization`;
- a hello when it starts (OnInit), then a timer loop (OnTimer): a heartbeat, the deal batches
  and position snapshot waiting to go, and a poll of `GET commands?after={cursor}` whose
  commands it carries out once and acknowledges, keeping the cursor;
- a batch's JSON is encoded once: every retry (after a transport error, a 5xx or a 429, waiting
  as long as `Retry-After` says) sends the very same bytes, and a batch that still failed stays
  queued, byte for byte, for the next tick.

`client` supplies the transport and the base URL (an ASGI transport in-process, a TCP socket
against `bulwark serve`); its own default headers and cookies are not sent."""

import asyncio
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx

API_ROOT = "/api/bridge/v1/"
BATCH_MAX = 500  # the server's limit per deals or positions batch
RETRIABLE = frozenset({429, 500, 502, 503, 504})
# What a relative bridge API path may look like: a name, an optional id and action, a query.
_PATH = re.compile(r"^[a-z]+(/[0-9a-f-]{36}/[a-z]+)?(\?[a-z_]+=[0-9]+)?$")
_SENT_HEADERS = ("host", "content-length", "accept", "accept-encoding", "connection")


class NotAllowListed(AssertionError):
    """The EA was asked to call a URL outside its allow-listed base URL (MT5 would refuse)."""


@dataclass
class Terminal:
    login: int = 5_012_345
    server: str = "ICMarketsSC-Demo"
    company: str = "Raw Trading Ltd"
    currency: str = "USD"
    leverage: int = 500
    trade_mode: str = "demo"
    terminal_build: int = 4755
    ea_version: str = "1.4.2"
    balance: float = 10_000.0
    paused: bool = False  # set by a `pause_trading` command, cleared by `resume_trading`

    @property
    def user_agent(self) -> str:
        return f"MetaTrader 5 Terminal/5.{self.terminal_build} (Windows NT 10.0.19045; x64)"

    def hello(self) -> dict[str, Any]:
        return {
            "login": self.login,
            "server": self.server,
            "company": self.company,
            "currency": self.currency,
            "leverage": self.leverage,
            "trade_mode": self.trade_mode,
            "terminal_build": self.terminal_build,
            "ea_version": self.ea_version,
        }

    def heartbeat(self) -> dict[str, Any]:
        return {
            "sent_at": datetime.now(UTC).isoformat(),
            "connected": True,
            "trade_allowed": not self.paused,
            "balance": self.balance,
            "equity": self.balance,
            "margin": 0.0,
            "margin_free": self.balance,
        }


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a `Retry-After: <seconds>` header (the form the server sends)."""
    value = response.headers.get("retry-after", "").strip()
    return float(value) if value.isdigit() else None


@dataclass(frozen=True)
class Attempt:
    """One request as it left the EA."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Tick:
    """What one timer tick did."""

    heartbeat: int
    deals_accepted: int = 0
    positions_accepted: int = 0
    commands: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ExpertAdvisor:
    client: httpx.AsyncClient  # its base URL is the EA's allow-listed URL
    key: str
    terminal: Terminal = field(default_factory=Terminal)
    retries: int = 2
    retry_pause: float = 0.05  # after a transport error, or a retriable answer without Retry-After
    max_retry_after: float = 5.0  # a longer Retry-After is left to a later timer tick
    cursor: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    executed: list[dict[str, Any]] = field(default_factory=list)
    pending_batches: list[tuple[str, bytes]] = field(default_factory=list)  # (path, body) to send
    allowed: str = field(init=False, default="")  # the allow-listed prefix every URL must start with
    _seen_commands: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        base = self.client.base_url
        if base.scheme not in ("http", "https") or not base.host:
            raise NotAllowListed(f"the EA needs an absolute http(s) base URL, not {str(base)!r}")
        self.allowed = str(base).rstrip("/") + API_ROOT

    # -- WebRequest ----------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """The absolute URL of a bridge API path; anything not relative to the API is refused."""
        if not _PATH.match(path):
            raise NotAllowListed(f"{path!r} is not a relative bridge API path")
        url = self.allowed + path
        if not httpx.URL(url).path.startswith(API_ROOT) or not url.startswith(self.allowed):
            raise NotAllowListed(f"{url!r} is not under {self.allowed!r}")
        return url

    def _request(self, method: str, path: str, body: bytes | None) -> httpx.Request:
        headers = {"X-API-Key": self.key, "User-Agent": self.terminal.user_agent}
        if body is not None:
            headers["Content-Type"] = "application/json"
        elif method == "POST":
            headers["Content-Length"] = "0"  # WebRequest's POST with an empty data array
        request = self.client.build_request(method, self.url(path), content=body, headers=headers)
        # What WebRequest sends and nothing of the client's: no cookie jar, no Origin, no bearer.
        for name in list(request.headers):
            if name.lower() not in {*_SENT_HEADERS, "x-api-key", "user-agent", "content-type"}:
                del request.headers[name]
        if str(request.url) != self.url(path):
            raise NotAllowListed(f"the request went to {request.url}, not {self.url(path)}")
        return request

    async def request(self, method: str, path: str, body: bytes | None = None) -> httpx.Response:
        """One call, retried with the same bytes after a transport error, a 5xx or a 429."""
        for attempt in range(self.retries + 1):
            request = self._request(method, path, body)
            self.attempts.append(Attempt(method, str(request.url), dict(request.headers), body or b""))
            last = attempt == self.retries
            try:
                response = await self.client.send(request)
            except httpx.TransportError:
                if last:
                    raise
                await asyncio.sleep(self.retry_pause)
                continue
            if response.status_code not in RETRIABLE or last:
                return response
            wait = retry_after(response)
            if wait is not None and wait > self.max_retry_after:
                return response  # MQL5 code would not block OnTimer that long: a later tick tries
            await asyncio.sleep(self.retry_pause if wait is None else wait)
        raise AssertionError("unreachable")

    async def call(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self.request("POST", path, encode(body))

    # -- what the EA does ----------------------------------------------------------------------

    async def start(self) -> httpx.Response:
        return await self.call("hello", self.terminal.hello())

    async def beat(self) -> httpx.Response:
        return await self.call("heartbeat", self.terminal.heartbeat())

    def queue_deals(self, deals: Iterable[dict[str, Any]]) -> list[bytes]:
        """Deals to report, in batches the server accepts; each batch's body is fixed now."""
        return self._queue("deals", list(deals))

    def queue_positions(self, positions: Iterable[dict[str, Any]]) -> list[bytes]:
        """The open positions as the terminal sees them now (the server keeps each ticket's last
        report; it does not drop a ticket missing from a later snapshot)."""
        return self._queue("positions", list(positions))

    def _queue(self, kind: str, items: list[dict[str, Any]]) -> list[bytes]:
        bodies = [encode({kind: items[i : i + BATCH_MAX]}) for i in range(0, max(len(items), 1), BATCH_MAX)]
        self.pending_batches.extend((kind, body) for body in bodies)
        return bodies

    async def flush(self) -> tuple[int, int]:
        """Sends the queued batches in order; one the server did not take stays first in line
        (unchanged) for the next tick. Answers the deals and positions accepted."""
        accepted = {"deals": 0, "positions": 0}
        while self.pending_batches:
            kind, body = self.pending_batches[0]
            try:
                response = await self.request("POST", kind, body)
            except httpx.TransportError:
                break
            if response.status_code != 200:
                if 400 <= response.status_code < 500 and response.status_code not in RETRIABLE:
                    # A batch the server refuses will never be taken: resending it is pointless.
                    raise AssertionError(f"{kind} batch refused: {response.status_code} {response.text}")
                break
            accepted[kind] += int(response.json()["accepted"])
            self.pending_batches.pop(0)
        return accepted["deals"], accepted["positions"]

    async def poll(self) -> list[dict[str, Any]]:
        """New commands since the cursor: each carried out once and acknowledged."""
        response = await self.request("GET", f"commands?after={self.cursor}")
        if response.status_code != 200:
            return []
        answer = response.json()
        self.cursor = max(self.cursor, int(answer["cursor"]))
        done = []
        for command in answer["commands"]:
            if command["id"] in self._seen_commands:
                continue
            self._seen_commands.add(command["id"])
            self.execute(command)
            await self.ack(command["id"])
            done.append(command)
        return done

    def execute(self, command: dict[str, Any]) -> None:
        if command["kind"] == "pause_trading":
            self.terminal.paused = True
        elif command["kind"] == "resume_trading":
            self.terminal.paused = False
        self.executed.append(command)

    async def ack(self, command_id: str) -> bool:
        """204; or 404 to a resent ack whose first answer was lost (the first one counted)."""
        sent = len(self.attempts)
        response = await self.request("POST", f"commands/{UUID(command_id)}/ack")
        return response.status_code == 204 or (response.status_code == 404 and len(self.attempts) - sent > 1)

    async def tick(self) -> Tick:
        """OnTimer: heartbeat, queued batches, commands."""
        beat = await self.beat()
        deals, positions = await self.flush()
        return Tick(beat.status_code, deals, positions, await self.poll())

    async def run(self, beats: int, interval: float = 0.0) -> list[httpx.Response]:
        answers = [await self.start()]
        for _ in range(beats):
            await asyncio.sleep(interval)
            answers.append(await self.beat())
        return answers

    async def run_timer(self, ticks: int, interval: float) -> list[Tick]:
        """OnInit's hello (which must be taken), then `ticks` timer ticks `interval` apart."""
        hello = await self.start()
        if hello.status_code != 200:
            raise AssertionError(f"hello refused: {hello.status_code} {hello.text}")
        done = []
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        for _ in range(ticks):
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            done.append(await self.tick())
        return done


def encode(body: dict[str, Any]) -> bytes:
    """Compact JSON, as an EA builds it once per call or batch."""
    return json.dumps(body, separators=(",", ":")).encode()
