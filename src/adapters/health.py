"""Dependency probes for readiness."""

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.database import ping


class DependencyProbe:
    def __init__(self, engine: AsyncEngine, redis: aioredis.Redis | None) -> None:
        self.engine = engine
        self.redis = redis

    async def failing(self) -> list[str]:
        """Names of the dependencies that do not answer."""
        failing: list[str] = []
        try:
            await ping(self.engine)
        except Exception:
            failing.append("database")
        if self.redis is not None:
            try:
                await self.redis.ping()
            except Exception:
                failing.append("redis")
        return failing
