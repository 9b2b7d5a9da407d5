"""Keys checked on a gateway's behalf (`POST /api/v1/authz/bridge`, forward-auth): junk keys
naming ever new bridge ids cost a database lookup each, so an address is allowed only so many
failures; past them it gets 429 with no lookup at all, while good keys from elsewhere go on.
Both backends."""

import dataclasses
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.storage.bridge_repository import SqlBridgeRepository
from domain.bridges import make_key
from entrypoints.settings import Settings
from tests.e2e.bridges.test_bridges import PinnedClock, create_bridge
from tests.e2e.conftest import Service, start_service
from tests.e2e.identity_helpers import FAST_ARGON2, browser
from tests.e2e.test_orgs_and_roles import new_user

BARE = {"content-length": "0"}


@pytest.fixture
async def service(service_settings: Settings, redis_namespace: str) -> AsyncIterator[Service]:
    settings = dataclasses.replace(service_settings, bridge_limit_per_ip="3/60", **FAST_ARGON2)
    async for svc in start_service(settings, redis_namespace, clock=PinnedClock()):
        yield svc


async def test_an_address_sending_junk_keys_is_cut_off_from_lookups(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    actor = await new_user(service)
    good = (await create_bridge(service, actor))["key"]
    lookups: list[object] = []
    original = SqlBridgeRepository.standing

    async def counting(self: SqlBridgeRepository, bridge_id: Any) -> Any:
        lookups.append(bridge_id)
        return await original(self, bridge_id)

    monkeypatch.setattr(SqlBridgeRepository, "standing", counting)
    async with browser(service, ip="2001:db8:7:7::1") as gateway:
        answers = []
        for n in range(6):
            junk = make_key(uuid.uuid4(), secrets.token_bytes(32))
            # Addresses of one /64 count as one: the attacker gains nothing by rotating them.
            gateway._transport.client = (f"2001:db8:7:7::{n + 1:x}", 40000)  # type: ignore[attr-defined]
            if n % 2:
                r = await gateway.get("/api/v1/authz/forward", headers={"x-api-key": junk})
            else:
                r = await gateway.post("/api/v1/authz/bridge", headers={**BARE, "x-api-key": junk})
            answers.append(r.status_code)
    assert answers == [401, 401, 401, 401, 429, 429]
    assert len(lookups) == 4  # the fourth failure was looked up, counted, and closed the door
    # Another address's good key is looked up and answered as ever.
    r = await service.client.post("/api/v1/authz/bridge", headers={**BARE, "x-api-key": good})
    assert r.status_code == 200 and r.json()["status"] == "pending"
