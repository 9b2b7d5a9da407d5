"""Liveness (the process answers) and readiness (its dependencies answer)."""

import asyncio

import msgspec
from litestar import Controller, Response, get

from application.errors import DependencyUnavailable
from entrypoints.http.dependencies import ContainerDep


class HealthStatus(msgspec.Struct):
    status: str
    checks: dict[str, str] = msgspec.field(default_factory=dict)


class HealthController(Controller):
    path = "/healthz"
    tags = ["health"]
    opt = {"public": True}

    @get("/live", operation_id="healthLive", summary="The process is up (touches nothing).")
    async def live(self) -> HealthStatus:
        return HealthStatus(status="ok")

    @get("/ready", operation_id="healthReady", summary="Database and Redis answer.")
    async def ready(self, container: ContainerDep) -> Response[HealthStatus]:
        try:
            async with asyncio.timeout(3):
                failing = await container.probe.failing()
        except TimeoutError:
            failing = ["database or redis (timed out)"]
        if failing:
            raise DependencyUnavailable(f"Not ready: {', '.join(failing)} unavailable.")
        checks = {"database": "ok", "redis": "ok" if container.redis is not None else "in-process"}
        return Response(HealthStatus(status="ok", checks=checks))
