"""Helper process for the revocation tests: a worker that starts a RedisRevocationStore, prints
"ready", then polls its memory until SESSION_ID is revoked and prints the wall-clock instant it
saw it (or "timeout").

Usage: python _revocation_watcher.py REDIS_URL NAMESPACE SESSION_ID USER_ID ORG_ID"""

import asyncio
import sys
import time
from datetime import UTC, datetime
from uuid import UUID

import redis.asyncio as aioredis

from adapters.revocation.redis_store import RedisRevocationStore


async def main(argv: list[str]) -> None:
    url, namespace, session_id, user_id, org_id = argv
    client = aioredis.from_url(url)
    store = RedisRevocationStore(client, namespace)
    await store.start()
    try:
        if not await store.healthy():
            print("unhealthy", flush=True)
            return
        issued_at = datetime.now(UTC)
        ids = (UUID(session_id), UUID(user_id), UUID(org_id))
        print("ready", flush=True)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if await store.is_revoked(*ids, issued_at):
                print(f"{time.time():.6f}", flush=True)
                return
            await asyncio.sleep(0.001)
        print("timeout", flush=True)
    finally:
        await store.stop()
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
