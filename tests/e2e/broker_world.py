"""A running public API, credential vault and cTrader simulator for the broker-connection tests.

The public API and the vault are built by the real composition root from one set of settings
(development: the vault's keys are generated in the data dir and the API sees only their public
half), on SQLite or on PostgreSQL + Redis. cTrader is the simulator, a real server on loopback."""

import base64
import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select

from adapters.storage.database import create_engine
from adapters.storage.tables import metadata
from entrypoints.composition import VaultContainer, build_vault_container
from entrypoints.settings import Settings
from entrypoints.vault_app import create_vault_asgi
from tests.ctrader_simulator import CtraderSimulator
from tests.e2e.conftest import FRONTEND, Lifespan, Service
from tests.e2e.test_orgs_and_roles import Actor, new_user

CLIENT_ID = "bulwark-test-app"
CLIENT_SECRET = "simulator-app-secret-0123456789"


class PinnedClock:
    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@dataclass
class Vault:
    container: VaultContainer
    client: httpx.AsyncClient


@dataclass
class BrokerWorld:
    service: Service
    vault: Vault
    sim: CtraderSimulator
    settings: Settings
    clock: PinnedClock
    namespace: str
    owner_url: str  # the tables' owner: sees past row-level security, as an attacker with a dump does

    async def rows(self, query: Any) -> list[Any]:
        engine = create_engine(self.owner_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                return list(await conn.execute(query))
        finally:
            await engine.dispose()

    async def dump(self) -> str:
        """Every row of every table, as text: what a stolen database export holds."""
        engine = create_engine(self.owner_url, pool_size=1)
        found: list[str] = []
        try:
            async with engine.connect() as conn:
                for table in metadata.sorted_tables:
                    for row in await conn.execute(select(table)):
                        found.extend(
                            v.hex() + bytes(v).decode("latin-1")
                            if isinstance(v, bytes | memoryview)
                            else str(v)
                            for v in row
                        )
        finally:
            await engine.dispose()
        return "\n".join(found)


def broker_settings(base: Settings, sim: CtraderSimulator, **overrides: Any) -> Settings:
    return dataclasses.replace(
        base,
        argon2_memory_kib=19456,
        ctrader_client_id=CLIENT_ID,
        ctrader_client_secret=CLIENT_SECRET,
        ctrader_auth_url=sim.auth_url,
        ctrader_token_url=sim.token_url,
        ctrader_api_url=sim.ws_url,
        ctrader_demo_api_url=sim.ws_url,
        ctrader_redirect_uri="https://bulwark.test/api/v1/broker-connections/ctrader/callback",
        **overrides,
    )


@asynccontextmanager
async def running_vault(settings: Settings, namespace: str, clock: PinnedClock) -> AsyncIterator[Vault]:
    container = build_vault_container(settings, redis_namespace=namespace, clock=clock)
    app = create_vault_asgi(container)
    async with Lifespan(app):
        transport = httpx.ASGITransport(app=app, client=("10.0.0.5", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://vault.internal") as client:
            yield Vault(container, client)


# -- the browser's part ----------------------------------------------------------------------------


async def start_flow(world: BrokerWorld, actor: Actor, **body: Any) -> httpx.Response:
    return await world.service.client.post(
        f"/api/v1/orgs/{actor.org_id}/broker-connections/ctrader/authorize", json=body, headers=actor.headers
    )


async def consent(world: BrokerWorld, authorization_url: str) -> str:
    """The browser at cTrader's consent page (the simulator, over a real socket): where it is
    sent back to."""
    async with httpx.AsyncClient() as browser:
        r = await browser.get(authorization_url, follow_redirects=False)
    assert r.status_code == 302, r.text
    return r.headers["location"]


async def come_back(
    world: BrokerWorld, location: str, cookies: dict[str, str] | None = None
) -> httpx.Response:
    """The browser following cTrader's redirect to our callback (no bearer token)."""
    parts = urlsplit(location)
    headers = {"cookie": "; ".join(f"{k}={v}" for k, v in (cookies or {}).items())} if cookies else {}
    world.service.client.cookies.clear()
    return await world.service.client.get(f"{parts.path}?{parts.query}", headers=headers)


def flow_cookie(response: httpx.Response) -> dict[str, str]:
    header = next(h for h in response.headers.get_list("set-cookie") if h.startswith("bulwark_broker_flow="))
    return {"bulwark_broker_flow": header.split(";", 1)[0].split("=", 1)[1]}


async def connect(world: BrokerWorld, actor: Actor, **body: Any) -> str:
    """The whole flow as a browser drives it; answers the new connection's id."""
    started = await start_flow(world, actor, **body)
    assert started.status_code == 200, started.text
    location = await consent(world, started.json()["authorization_url"])
    back = await come_back(world, location, flow_cookie(started))
    assert back.status_code == 303, back.text
    target = back.headers["location"]
    assert target.startswith(f"{FRONTEND}/broker-connections?connected="), target
    return target.rsplit("=", 1)[1]


async def trader(world: BrokerWorld, prefix: str = "trader") -> Actor:
    return await new_user(world.service, prefix)


# -- the worker's part -----------------------------------------------------------------------------


async def service_token(world: BrokerWorld, scopes: tuple[str, ...] = ("broker_credentials:use",)) -> str:
    created = await world.vault.container.create_client(f"worker-{uuid.uuid4().hex[:12]}", list(scopes))
    basic = base64.b64encode(f"{created.client.id}:{created.secret}".encode()).decode()
    r = await world.vault.client.post(
        "/vault/v1/token",
        content="grant_type=client_credentials",
        headers={"authorization": f"Basic {basic}", "content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


async def access(
    vault: Vault, token: str, connection_id: str, purpose: str = "deployment-1"
) -> httpx.Response:
    return await vault.client.post(
        f"/vault/v1/broker-connections/{connection_id}/access",
        json={"purpose": purpose},
        headers={"authorization": f"Bearer {token}"},
    )
