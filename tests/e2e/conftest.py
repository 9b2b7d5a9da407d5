"""The HTTP app, built by the real composition root, against the embedded backends and against
PostgreSQL + Redis. Tests talk to it through its outermost ASGI callable, like a server would."""

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.storage import migrations
from application.ports.clock import Clock
from entrypoints.app import create_asgi
from entrypoints.composition import Container, build_container
from entrypoints.settings import Settings, validate

FRONTEND = "https://app.example.com"


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    base = Settings(data_dir=tmp_path / "data", frontend_url=FRONTEND)
    settings = dataclasses.replace(base, **overrides)
    validate(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


class Lifespan:
    """Runs the ASGI lifespan protocol around a test (httpx's transport does not)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.queue: Any = None
        self.task: Any = None

    async def __aenter__(self) -> "Lifespan":
        import asyncio

        self.to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task = asyncio.create_task(
            self.app(
                {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                self.to_app.get,
                self.from_app.put,
            )
        )
        await self.to_app.put({"type": "lifespan.startup"})
        message = await self.from_app.get()
        assert message["type"] == "lifespan.startup.complete", message
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.to_app.put({"type": "lifespan.shutdown"})
        await self.from_app.get()
        await self.task


class Service:
    def __init__(self, container: Container, client: httpx.AsyncClient) -> None:
        self.container = container
        self.client = client


@pytest.fixture(params=["embedded", "postgres+redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def service_settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    if backend == "embedded":
        settings = make_settings(tmp_path)
        migrations.upgrade(settings.effective_database_url)
        return settings
    pg_url = request.getfixturevalue("app_pg_url")
    redis_url = request.getfixturevalue("redis_url")
    return make_settings(tmp_path, database_url=pg_url, redis_url=redis_url)


async def start_service(
    settings: Settings, namespace: str, clock: Clock | None = None
) -> AsyncIterator[Service]:
    container = build_container(settings, redis_namespace=namespace, clock=clock)
    app = create_asgi(container)
    async with Lifespan(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(
            transport=transport, base_url="https://bulwark.test", headers={"origin": FRONTEND}
        ) as client:
            yield Service(container, client)


@pytest.fixture
async def service(service_settings: Settings, redis_namespace: str) -> AsyncIterator[Service]:
    async for svc in start_service(service_settings, redis_namespace):
        yield svc


@pytest.fixture
def embedded_settings(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path)
    migrations.upgrade(settings.effective_database_url)
    return settings


@pytest.fixture
async def embedded_service(embedded_settings: Settings, redis_namespace: str) -> AsyncIterator[Service]:
    async for svc in start_service(embedded_settings, redis_namespace):
        yield svc
