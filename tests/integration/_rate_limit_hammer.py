"""Helper process for the rate limiter tests: fires many concurrent hits at one Redis key, all
starting when the parent says "go" on stdin (after every process said "ready"), and prints how
many were admitted. A start barrier rather than a clock: on a loaded machine a process may need
seconds to start.

Usage: python _rate_limit_hammer.py REDIS_URL NAMESPACE KEY LIMIT WINDOW_SECONDS HITS"""

import asyncio
import sys

import redis.asyncio as aioredis

from adapters.limiter.redis_sliding_window import RedisSlidingWindowLimiter
from application.ports.rate_limiter import RateLimit


async def main(argv: list[str]) -> None:
    url, namespace, key, limit, window, hits = argv
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=32)
    client = aioredis.Redis(connection_pool=pool)
    try:
        limiter = RedisSlidingWindowLimiter(client, namespace)
        rate = RateLimit(limit=int(limit), window_seconds=float(window))
        await client.ping()
        await limiter.reset("warm-up")  # connection ready before the start line
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        decisions = await asyncio.gather(*(limiter.hit(key, rate) for _ in range(int(hits))))
        print(sum(decision.allowed for decision in decisions), flush=True)
    finally:
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
