"""An MT5 Expert Advisor as the bridge API sees it: WebRequest-style calls (plain headers, the
key in `X-API-Key`, small JSON bodies, no cookies, no Origin), a hello when it starts, then
heartbeats on a timer; a call that fails for the network is retried with the same body."""

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx


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
            "trade_allowed": True,
            "balance": self.balance,
            "equity": self.balance,
            "margin": 0.0,
            "margin_free": self.balance,
        }


@dataclass
class ExpertAdvisor:
    client: httpx.AsyncClient  # the allow-listed base URL is the client's
    key: str
    terminal: Terminal = field(default_factory=Terminal)
    retries: int = 2

    async def call(self, path: str, body: dict[str, Any]) -> httpx.Response:
        headers = {"X-API-Key": self.key, "Content-Type": "application/json", "User-Agent": "MetaTrader 5"}
        for attempt in range(self.retries + 1):
            try:
                return await self.client.post(f"/api/bridge/v1/{path}", json=body, headers=headers)
            except httpx.TransportError:
                if attempt == self.retries:
                    raise
                await asyncio.sleep(0.05)
        raise AssertionError("unreachable")

    async def start(self) -> httpx.Response:
        return await self.call("hello", self.terminal.hello())

    async def beat(self) -> httpx.Response:
        return await self.call("heartbeat", self.terminal.heartbeat())

    async def run(self, beats: int, interval: float = 0.0) -> list[httpx.Response]:
        answers = [await self.start()]
        for _ in range(beats):
            await asyncio.sleep(interval)
            answers.append(await self.beat())
        return answers
