"""MT5 bridges: keys shown once, bound by the first hello, refused from another account, rotated
with an overlap, revoked at once; the bridge API's own limits and bad input; and the gateway's
`POST /api/v1/authz/bridge`. Both backends, through the app's outermost ASGI callable."""

import dataclasses
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.bridge_repository import SqlBridgeRepository
from adapters.storage.database import create_engine
from adapters.storage.tables import audit_events, bridges
from application.identity import RequestContext
from application.use_cases.bridge_api import _suspend as suspend_bridge
from domain.bridge_presence import SecondTerminal
from domain.bridges import make_key
from domain.permissions import SYSTEM_ROLE_IDS, SystemRole
from entrypoints.settings import Settings
from tests.bridge_simulator import ExpertAdvisor, Terminal
from tests.e2e.conftest import Service, start_service
from tests.e2e.identity_helpers import FAST_ARGON2, NO_BODY, browser, login_response, sent_mail, service_with
from tests.e2e.test_orgs_and_roles import Actor, admin_post, create_org, join, make_platform_admin, new_user


class PinnedClock:
    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> PinnedClock:
    return PinnedClock()


@pytest.fixture
async def service(
    service_settings: Settings, redis_namespace: str, clock: PinnedClock
) -> AsyncIterator[Service]:

    settings = dataclasses.replace(service_settings, **FAST_ARGON2)
    async for svc in start_service(settings, redis_namespace, clock=clock):
        yield svc


@pytest.fixture
async def owner(backend: str, service: Service, request: pytest.FixtureRequest) -> AsyncIterator[AsyncEngine]:
    """Reads past row-level security (the tables' owner), to look at what was stored."""
    if backend == "embedded":
        yield service.container.engine
        return
    engine = create_engine(str(request.getfixturevalue("fresh_pg_url")), pool_size=2)
    try:
        yield engine
    finally:
        await engine.dispose()


def ea(service: Service, key: str, terminal: Terminal | None = None) -> ExpertAdvisor:
    headers = {k: v for k, v in service.client.headers.items() if k.lower() != "origin"}
    bare = httpx.AsyncClient(
        transport=service.client._transport, base_url=str(service.client.base_url), headers=headers
    )
    return ExpertAdvisor(bare, key, terminal or Terminal())


async def create_bridge(service: Service, actor: Actor, name: str = "Desk EA") -> dict[str, Any]:
    r = await service.client.post(
        f"/api/v1/orgs/{actor.org_id}/bridges", json={"name": name}, headers=actor.headers
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def bridge_rows(owner: AsyncEngine) -> list[Any]:
    async with owner.connect() as conn:
        return list(await conn.execute(select(bridges)))


async def test_a_key_is_shown_once_and_its_first_hello_binds_it(service: Service) -> None:
    actor = await new_user(service)
    created = await create_bridge(service, actor)
    key = created["key"]
    assert key.startswith("bwk_") and len(key) > 80
    assert created["bridge"]["status"] == "pending" and key.startswith(created["bridge"]["key_prefix"])
    listed = await service.client.get(f"/api/v1/orgs/{actor.org_id}/bridges", headers=actor.headers)
    assert (
        key not in listed.text
        and listed.json()["bridges"][0]["key_prefix"] == created["bridge"]["key_prefix"]
    )
    advisor = ea(service, key)
    answers = await advisor.run(beats=3)
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    shown = await service.client.get(
        f"/api/v1/orgs/{actor.org_id}/bridges/{created['bridge']['id']}", headers=actor.headers
    )
    body = shown.json()
    assert body["status"] == "online" and body["account"] == {
        "login": 5_012_345,
        "server": "ICMarketsSC-Demo",
        "company": "Raw Trading Ltd",
    }
    assert body["terminal_build"] == 4755 and body["ea_version"] == "1.4.2" and body["last_seen_at"]
    # The same terminal starting again is welcome.
    assert (await advisor.start()).status_code == 200


async def test_a_copied_key_in_another_terminal_is_refused_and_audited(
    service: Service, owner: AsyncEngine
) -> None:
    actor = await new_user(service)
    key = (await create_bridge(service, actor))["key"]
    assert (await ea(service, key).start()).status_code == 200
    thief = ea(service, key, Terminal(login=9_999_999, server="Other-Live"))
    r = await thief.start()
    assert r.status_code == 403 and r.json()["code"] == "bridge_account_mismatch"
    async with service.container.engine.connect() as conn:
        rows = list(
            await conn.execute(select(audit_events).where(audit_events.c.action == "bridge.account_mismatch"))
        )
    assert len(rows) == 1 and rows[0].details["login"] == 9_999_999


async def test_heartbeats_need_a_hello_and_a_silent_bridge_shows_offline(
    service: Service, clock: PinnedClock, owner: AsyncEngine
) -> None:
    actor = await new_user(service)
    created = await create_bridge(service, actor)
    advisor = ea(service, created["key"])
    r = await advisor.beat()
    assert r.status_code == 409 and r.json()["code"] == "hello_required"
    await advisor.run(beats=1)
    path = f"/api/v1/orgs/{actor.org_id}/bridges/{created['bridge']['id']}"
    assert (await service.client.get(path, headers=actor.headers)).json()["status"] == "online"
    clock.advance(91)
    assert (await service.client.get(path, headers=actor.headers)).json()["status"] == "offline"
    assert (await advisor.beat()).status_code == 200
    # The mark is written with others' by the flusher (each second); until then the row is older.
    assert (await service.client.get(path, headers=actor.headers)).json()["status"] == "offline"
    assert await service.container.bridges.sightings.flush() == 1
    assert (await service.client.get(path, headers=actor.headers)).json()["status"] == "online"
    [row] = await bridge_rows(owner)
    assert row.last_heartbeat["balance"] == 10_000.0


async def test_a_rotated_key_overlaps_for_ten_minutes_then_only_the_new_one_works(
    service: Service, clock: PinnedClock
) -> None:
    actor = await new_user(service)
    created = await create_bridge(service, actor)
    old = ea(service, created["key"])
    assert (await old.start()).status_code == 200
    path = f"/api/v1/orgs/{actor.org_id}/bridges/{created['bridge']['id']}/rotate-key"
    r = await service.client.post(path, headers={**actor.headers, "content-length": "0"})
    assert r.status_code == 200, r.text
    new = ea(service, r.json()["key"])
    assert r.json()["key"] != created["key"]
    assert (await old.beat()).status_code == 200
    assert (await new.beat()).status_code == 200
    clock.advance(601)
    assert (await old.beat()).json()["code"] == "invalid_api_key"
    assert (await new.beat()).status_code == 200
    clock.advance(-601 + 700)  # long after the login: rotating again needs a fresh authentication
    r = await service.client.post(path, headers={**actor.headers, "content-length": "0"})
    assert r.status_code == 401 and r.json()["code"] == "reauth_required"


async def test_revoking_stops_the_very_next_request(service: Service) -> None:
    actor = await new_user(service)
    created = await create_bridge(service, actor)
    advisor = ea(service, created["key"])
    assert (await advisor.start()).status_code == 200
    r = await service.client.delete(
        f"/api/v1/orgs/{actor.org_id}/bridges/{created['bridge']['id']}",
        headers={**actor.headers, "content-length": "0"},
    )
    assert r.status_code == 204, r.text
    r = await advisor.beat()
    assert r.status_code == 401 and r.json()["code"] == "invalid_api_key"
    r = await service.client.post(
        "/api/v1/authz/bridge", headers={"x-api-key": created["key"], "content-length": "0"}
    )
    assert r.status_code == 401


async def test_an_owner_who_left_and_a_disabled_org_stop_their_bridges(service: Service) -> None:
    admin = await new_user(service, "admin")
    org_id, admin = await create_org(service, admin)
    member = await join(
        service, admin, await new_user(service, "dev"), role_ids=[str(SYSTEM_ROLE_IDS[SystemRole.DEVELOPER])]
    )
    advisor = ea(service, (await create_bridge(service, member))["key"])
    assert (await advisor.start()).status_code == 200  # the key is now in the worker's cache
    r = await service.client.delete(f"/api/v1/orgs/{org_id}/members/{member.user_id}", headers=admin.headers)
    assert r.status_code == 204, r.text
    r = await advisor.beat()
    assert r.status_code == 403 and r.json()["code"] == "owner_unavailable"

    admins_ea = ea(service, (await create_bridge(service, admin))["key"])
    assert (await admins_ea.start()).status_code == 200
    root = await make_platform_admin(service, await new_user(service, "root"))
    r = await admin_post(service, f"/orgs/{org_id}/disable", root)
    assert r.status_code == 200, r.text
    r = await admins_ea.beat()
    assert r.status_code == 403 and r.json()["code"] == "org_disabled"


async def test_the_gateway_learns_whose_a_key_is(service: Service) -> None:
    actor = await new_user(service)
    created = await create_bridge(service, actor)
    key = created["key"]
    bare = {"content-length": "0"}
    r = await service.client.post("/api/v1/authz/bridge", headers={**bare, "x-api-key": key})
    assert r.status_code == 200 and r.json()["account"] is None and r.json()["status"] == "pending"
    await ea(service, key).start()
    r = await service.client.post("/api/v1/authz/bridge", headers={**bare, "x-api-key": key})
    assert r.json() == {
        "bridge_id": created["bridge"]["id"],
        "org_id": actor.org_id,
        "account": {"login": 5_012_345, "server": "ICMarketsSC-Demo"},
        "status": "online",
    }
    # One character of the secret changed, never to itself (a key's last characters are often "a").
    forged = key[:-10] + ("b" if key[-10] != "b" else "c") + key[-9:]
    for wrong in ("", "bwk_nope", forged, "bwk_" + "a" * 26 + "_" + "b" * 52):
        r = await service.client.post("/api/v1/authz/bridge", headers={**bare, "x-api-key": wrong})
        assert r.status_code == 401, (wrong, r.text)


async def test_junk_keys_naming_unknown_bridges_cost_one_lookup_each(
    service: Service, clock: PinnedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gateways forward any key they are sent: a key naming a bridge nobody has is looked up once,
    then refused from memory for a while, however often it comes."""
    lookups: list[object] = []
    original = SqlBridgeRepository.standing

    async def counting(self: SqlBridgeRepository, bridge_id: Any) -> Any:
        lookups.append(bridge_id)
        return await original(self, bridge_id)

    monkeypatch.setattr(SqlBridgeRepository, "standing", counting)
    junk = make_key(uuid.uuid4(), secrets.token_bytes(32))
    bare = {"content-length": "0", "x-api-key": junk}
    for _ in range(5):
        r = await service.client.post("/api/v1/authz/bridge", headers=bare)
        assert r.status_code == 401
        r = await service.client.get("/api/v1/authz/forward", headers={"x-api-key": junk})
        assert r.status_code == 401
    assert len(lookups) == 1
    clock.advance(31)  # remembered for 30 s, then asked again
    assert (await service.client.post("/api/v1/authz/bridge", headers=bare)).status_code == 401
    assert len(lookups) == 2


async def test_malformed_oversized_and_mistyped_bodies_get_4xx_and_store_nothing(
    service: Service, owner: AsyncEngine
) -> None:
    actor = await new_user(service)
    key = (await create_bridge(service, actor))["key"]
    advisor = ea(service, key)
    good = advisor.terminal.hello()
    for body in (
        {**good, "login": "12345"},
        {**good, "login": -1},
        {**good, "server": "x" * 101},
        {**good, "server": "ICM\u0000arkets"},
        {**good, "unknown": 1},
        {k: v for k, v in good.items() if k != "server"},
        {**good, "company": "y" * 100_000},
    ):
        r = await advisor.call("hello", body)
        assert 400 <= r.status_code < 500, (body, r.text)
    [row] = await bridge_rows(owner)
    assert row.account_login is None and row.status == "pending"
    assert (await advisor.start()).status_code == 200
    r = await advisor.call("heartbeat", {**advisor.terminal.heartbeat(), "balance": "lots"})
    assert r.status_code == 400


async def test_a_bridge_over_its_limit_gets_429_while_users_still_log_in(
    service_settings: Settings, redis_namespace: str
) -> None:
    async with service_with(
        service_settings, redis_namespace, bridge_limit_per_key="5/60", **FAST_ARGON2
    ) as svc:
        actor = await new_user(svc)
        advisor = ea(svc, (await create_bridge(svc, actor))["key"])
        codes = [(await advisor.start()).status_code for _ in range(7)]
        assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
        assert (await login_response(svc.client, actor.email)).status_code == 200


async def test_an_ea_over_its_limit_waits_out_retry_after_and_resends_the_same_batch(
    service_settings: Settings, redis_namespace: str
) -> None:
    async with service_with(
        service_settings, redis_namespace, bridge_limit_per_key="2/2", **FAST_ARGON2
    ) as svc:
        actor = await new_user(svc)
        advisor = ea(svc, (await create_bridge(svc, actor))["key"])
        assert [r.status_code for r in await advisor.run(beats=1)] == [200, 200]
        sent = len(advisor.attempts)
        [body] = advisor.queue_deals([deal(1), deal(2)])
        started = time.monotonic()
        assert await advisor.flush() == (2, 0)  # a 429 first, then the wait it asked for
        tries = advisor.attempts[sent:]
        assert len(tries) == 2 and {t.body for t in tries} == {body}
        assert time.monotonic() - started >= 1.0
        advisor.max_retry_after = 0.5  # shorter than the server asks: left to a later tick
        assert [(await advisor.beat()).status_code for _ in range(2)] == [200, 429]
        [later] = advisor.queue_deals([deal(3)])
        assert await advisor.flush() == (0, 0) and advisor.pending_batches == [("deals", later)]


def deal(ticket: int) -> dict[str, Any]:
    return {
        "ticket": ticket,
        "time": "2026-12-04T06:00:00Z",
        "symbol": "EURUSD",
        "type": "buy",
        "entry": "in",
        "volume": 0.1,
        "price": 1.0842,
        "profit": 0.0,
    }


async def count(owner: AsyncEngine, table: Any) -> int:
    from sqlalchemy import func

    async with owner.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_a_thousand_resent_deals_store_no_duplicate(service: Service, owner: AsyncEngine) -> None:
    from adapters.storage.tables import bridge_deals

    actor = await new_user(service)
    advisor = ea(service, (await create_bridge(service, actor))["key"])
    r = await advisor.call("deals", {"deals": [deal(1)]})
    assert r.status_code == 409 and r.json()["code"] == "hello_required"
    await advisor.start()
    batches = [[deal(t) for t in range(start, start + 500)] for start in (1, 501)]
    for _ in range(2):  # the EA resends everything, as after a lost answer
        for batch in batches:
            r = await advisor.call("deals", {"deals": batch})
            assert r.status_code == 200 and r.json() == {"accepted": 500}, r.text
    assert await count(owner, bridge_deals) == 1000
    r = await advisor.call("deals", {"deals": [deal(t) for t in range(2000, 2501)]})
    assert r.status_code == 400 and r.json()["code"] == "batch_too_large"
    r = await advisor.call("deals", {"deals": [deal(3000), deal(3000)]})
    assert r.status_code == 400
    r = await advisor.call("deals", {"deals": [{**deal(4000), "symbol": "EUR\u0000USD"}]})
    assert r.status_code == 400
    r = await advisor.call("deals", {"deals": [{**deal(4001), "volume": "0.1"}]})
    assert r.status_code == 400
    assert await count(owner, bridge_deals) == 1000


async def test_positions_are_kept_as_last_reported(service: Service, owner: AsyncEngine) -> None:
    from adapters.storage.tables import bridge_positions

    actor = await new_user(service)
    advisor = ea(service, (await create_bridge(service, actor))["key"])
    await advisor.start()
    position = {
        "ticket": 77,
        "time": "2026-12-04T06:00:00Z",
        "symbol": "XAUUSD",
        "type": "sell",
        "volume": 0.5,
        "price_open": 2650.1,
        "price_current": 2649.0,
    }
    assert (await advisor.call("positions", {"positions": [position]})).json() == {"accepted": 1}
    moved = {**position, "price_current": 2640.5, "profit": 480.0}
    assert (await advisor.call("positions", {"positions": [moved]})).json() == {"accepted": 1}
    async with owner.connect() as conn:
        [row] = list(await conn.execute(select(bridge_positions)))
    assert row.price_current == 2640.5 and row.profit == 480.0
    assert await count(owner, bridge_positions) == 1


async def test_commands_are_delivered_once_acknowledged_once_and_die_unpolled(
    service: Service, clock: PinnedClock
) -> None:
    actor = await new_user(service)
    created = await create_bridge(service, actor)
    advisor = ea(service, created["key"])
    await advisor.start()
    path = f"/api/v1/orgs/{actor.org_id}/bridges/{created['bridge']['id']}/commands"
    r = await service.client.post(path, json={"kind": "close_all"}, headers=actor.headers)
    assert r.status_code == 201, r.text
    command_id = r.json()["id"]
    assert (
        await service.client.post(path, json={"kind": "self_destruct"}, headers=actor.headers)
    ).status_code == 400
    headers = {"X-API-Key": created["key"]}
    polled = await advisor.client.get("/api/bridge/v1/commands?after=0", headers=headers)
    assert polled.status_code == 200, polled.text
    [command] = polled.json()["commands"]
    assert command["id"] == command_id and command["kind"] == "close_all"
    cursor = polled.json()["cursor"]
    again = await advisor.client.get("/api/bridge/v1/commands?after=0", headers=headers)
    assert again.json()["commands"] == []  # never delivered twice, whatever cursor is sent
    ack = f"/api/bridge/v1/commands/{command_id}/ack"
    assert (await advisor.client.post(ack, headers={**headers, "content-length": "0"})).status_code == 204
    assert (await advisor.client.post(ack, headers={**headers, "content-length": "0"})).status_code == 404
    r = await service.client.post(path, json={"kind": "pause_trading"}, headers=actor.headers)
    assert r.status_code == 201
    clock.advance(61)
    late = await advisor.client.get(f"/api/bridge/v1/commands?after={cursor}", headers=headers)
    assert late.json()["commands"] == []


async def test_two_terminals_on_one_key_suspend_the_bridge_and_mail_the_administrators(
    service: Service, clock: PinnedClock
) -> None:
    actor = await new_user(service)
    created = await create_bridge(service, actor)
    advisor = ea(service, created["key"])
    await advisor.run(beats=1)
    clock.advance(31)  # a new interval: the same terminal moving to another address is fine
    async with browser(service, ip="198.51.100.9") as elsewhere:
        moved = ExpertAdvisor(elsewhere, created["key"])
        assert (await moved.beat()).status_code == 200
        r = await advisor.beat()  # the first address again, within the interval: two terminals
        assert r.status_code == 403 and r.json()["code"] == "bridge_suspended"
        r = await moved.beat()
        assert r.status_code == 403 and r.json()["code"] == "bridge_suspended"
    shown = await service.client.get(
        f"/api/v1/orgs/{actor.org_id}/bridges/{created['bridge']['id']}", headers=actor.headers
    )
    assert shown.json()["status"] == "suspended"
    assert [m for m in sent_mail(service, actor.email) if "suspended" in m.subject]

    # Rotating the key resumes the bridge; the copied key dies at once (no overlap for it).
    clock.advance(120)  # the owner takes a while to act: the thief's address is quiet by then
    path = f"/api/v1/orgs/{actor.org_id}/bridges/{created['bridge']['id']}/rotate-key"
    r = await service.client.post(path, headers={**actor.headers, **NO_BODY})
    assert r.status_code == 200, r.text
    assert (await advisor.beat()).status_code == 401
    fresh = ExpertAdvisor(advisor.client, r.json()["key"])
    assert (await fresh.start()).status_code == 200
    assert (await fresh.beat()).status_code == 200


async def test_two_terminals_behind_one_address_are_caught_by_their_interleaved_clocks(
    service: Service, clock: PinnedClock
) -> None:
    """Two terminals on one machine (one address) whose clocks differ: their heartbeats' `sent_at`
    goes back and forth. A resend of the same heartbeat (same `sent_at`) is not that."""
    actor = await new_user(service)
    created = await create_bridge(service, actor)
    advisor = ea(service, created["key"])
    assert (await advisor.start()).status_code == 200
    first = advisor.terminal.heartbeat()
    for _ in range(2):  # the same heartbeat twice: a retry
        assert (await advisor.call("heartbeat", first)).status_code == 200
    behind = {
        **first,
        "sent_at": (datetime.fromisoformat(first["sent_at"]) - timedelta(seconds=20)).isoformat(),
    }
    r = await advisor.call("heartbeat", behind)
    assert r.status_code == 403 and r.json()["code"] == "bridge_suspended"
    assert (await advisor.beat()).json()["code"] == "bridge_suspended"
    [mail] = [m for m in sent_mail(service, actor.email) if "suspended" in m.subject]
    assert "terminal clocks interleave" in mail.body
    # Another betrayal, taken by a worker whose cache had not heard yet: no second suspension,
    # audit entry or mail.
    ports = service.container.bridges.heartbeat.ports
    async with ports.uow() as uow:
        bridge = await uow.bridges.get(uuid.UUID(actor.org_id), uuid.UUID(created["bridge"]["id"]))
    assert bridge is not None
    ctx = RequestContext(ip="198.51.100.1", user_agent=None, request_id=None)
    await suspend_bridge(ports, bridge, ctx, SecondTerminal.SECOND_ADDRESS, "203.0.113.7")
    assert len([m for m in sent_mail(service, actor.email) if "suspended" in m.subject]) == 1
    audited = await service.client.get(f"/api/v1/orgs/{actor.org_id}/audit", headers=actor.headers)
    [event] = [e for e in audited.json()["entries"] if e["action"] == "bridge.suspended"]
    assert event["details"]["reason"] == "interleaved_clock"


async def test_two_accounts_figures_interleaved_on_one_key_suspend_the_bridge(
    service: Service, clock: PinnedClock
) -> None:
    """A copied key heartbeating from another account's terminal behind the same address: the
    balances alternate (A, B, A, B). One change of balance, or one back, is not that."""
    actor = await new_user(service)
    created = await create_bridge(service, actor)
    advisor = ea(service, created["key"])
    assert (await advisor.start()).status_code == 200

    async def beat(balance: float) -> httpx.Response:
        clock.advance(1)
        advisor.terminal.balance = balance
        return await advisor.beat()

    for balance in (10_000.0, 10_250.0, 10_000.0, 10_000.0, 9_800.0):  # a deal, undone, then another
        assert (await beat(balance)).status_code == 200
    assert [(await beat(b)).status_code for b in (5_000.0, 9_800.0, 5_000.0)] == [200, 200, 403]
    shown = await service.client.get(
        f"/api/v1/orgs/{actor.org_id}/bridges/{created['bridge']['id']}", headers=actor.headers
    )
    assert shown.json()["status"] == "suspended"
    [mail] = [m for m in sent_mail(service, actor.email) if "suspended" in m.subject]
    assert "balances alternate" in mail.body


async def test_a_bridge_revoked_behind_the_cache_is_refused_by_every_report_call(
    service: Service, owner: AsyncEngine
) -> None:
    """The worker's cache is a shortcut, not the authority: a status changed in the database (as
    by another worker whose Redis publish was lost) stops deals, positions and commands at once."""
    actor = await new_user(service)
    created = await create_bridge(service, actor)
    advisor = ea(service, created["key"])
    await advisor.run(beats=1)
    async with owner.begin() as conn:
        await conn.execute(bridges.update().values(status="revoked"))
    assert (await advisor.call("deals", {"deals": [deal(1)]})).status_code == 401
    r = await advisor.client.get("/api/bridge/v1/commands", headers={"X-API-Key": created["key"]})
    assert r.status_code == 401
    async with owner.begin() as conn:
        await conn.execute(bridges.update().values(status="suspended"))
    r = await advisor.client.get("/api/bridge/v1/commands", headers={"X-API-Key": created["key"]})
    assert r.status_code == 403 and r.json()["code"] == "bridge_suspended"


async def test_a_revocation_whose_news_never_came_is_seen_within_the_cache_age(
    service: Service, owner: AsyncEngine, clock: PinnedClock
) -> None:
    """Heartbeats trust the worker's cache, kept fresh by Redis; should a revocation's version
    bump never reach Redis, the cached entry is still read again after five minutes."""
    actor = await new_user(service)
    created = await create_bridge(service, actor)
    advisor = ea(service, created["key"])
    await advisor.run(beats=1)
    async with owner.begin() as conn:
        await conn.execute(bridges.update().values(status="revoked"))  # no bump, no publish
    assert (await advisor.beat()).status_code == 200  # the cache has not heard
    clock.advance(301)
    assert (await advisor.beat()).status_code == 401


async def test_a_copied_key_polling_commands_from_elsewhere_suspends_the_bridge(service: Service) -> None:
    actor = await new_user(service)
    created = await create_bridge(service, actor)
    await ea(service, created["key"]).run(beats=1)
    async with browser(service, ip="198.51.100.23") as thief:
        r = await thief.get("/api/bridge/v1/commands", headers={"X-API-Key": created["key"]})
    assert r.status_code == 403 and r.json()["code"] == "bridge_suspended"


async def test_bad_cursors_times_and_payloads_get_400(service: Service) -> None:
    actor = await new_user(service)
    created = await create_bridge(service, actor)
    advisor = ea(service, created["key"])
    await advisor.start()
    headers = {"X-API-Key": created["key"]}
    for cursor in ("99999999999999999999999", "-1", "x"):
        r = await advisor.client.get(f"/api/bridge/v1/commands?after={cursor}", headers=headers)
        assert r.status_code == 400, (cursor, r.text)
    for moment in ("2026-12-04T06:00:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        r = await advisor.call("deals", {"deals": [{**deal(1), "time": moment}]})
        assert r.status_code == 400, (moment, r.text)
    path = f"/api/v1/orgs/{actor.org_id}/bridges/{created['bridge']['id']}/commands"
    for payload in ({"note": "a\u0000b"}, {f"k{i}": "v" for i in range(11)}, {"n": 1}):
        r = await service.client.post(
            path, json={"kind": "close_all", "payload": payload}, headers=actor.headers
        )
        assert r.status_code == 400, (payload, r.text)


async def test_junk_keys_naming_a_bridge_do_not_spend_its_budget(
    service_settings: Settings, redis_namespace: str
) -> None:
    async with service_with(
        service_settings, redis_namespace, bridge_limit_per_key="3/60", **FAST_ARGON2
    ) as svc:
        actor = await new_user(svc)
        key = (await create_bridge(svc, actor))["key"]
        junk = key[: key.rindex("_") + 1] + "a" * 52  # the bridge's real id, a wrong secret
        for _ in range(6):
            assert (await ea(svc, junk).start()).status_code == 401
        assert (await ea(svc, key).start()).status_code == 200
