"""Two-factor authentication through the HTTP app, on both backends, at pinned clocks.

Codes come from the independent RFC 6238 reference in the TOTP adapter tests, never from the
service's own helper."""

import asyncio
import dataclasses
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from adapters.storage import migrations
from entrypoints.settings import Settings
from tests.e2e.conftest import Service, make_settings, start_service
from tests.integration.test_totp_adapter import code_at_step, decode_svg_qr

PASSWORD = "a long and unguessable passphrase 7"


class PinnedClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@dataclass
class TwoFactorWorld:
    service: Service
    clock: PinnedClock

    @property
    def step(self) -> int:
        return int(self.clock.at.timestamp()) // 30

    def code(self, secret: str, offset: int = 0) -> str:
        return code_at_step(secret, self.step + offset)


@pytest.fixture
def world_settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    overrides: dict[str, Any] = {
        "argon2_memory_kib": 19456,
        "mfa_limit_per_user": "50/300",
        "mfa_limit_per_ip": "100/300",
    }
    if backend == "embedded":
        settings = make_settings(tmp_path, **overrides)
        migrations.upgrade(settings.effective_database_url)
        return settings
    return make_settings(
        tmp_path,
        database_url=request.getfixturevalue("app_pg_url"),
        redis_url=request.getfixturevalue("redis_url"),
        **overrides,
    )


@pytest.fixture
async def world(world_settings: Settings, redis_namespace: str) -> AsyncIterator[TwoFactorWorld]:
    # Near real time (the revocation store keeps its own wall clock), at the start of a step.
    start = datetime.fromtimestamp((int(datetime.now(UTC).timestamp()) // 30) * 30 + 1, UTC)
    clock = PinnedClock(start)
    async for service in start_service(world_settings, redis_namespace, clock=clock):
        yield TwoFactorWorld(service, clock)


async def signed_in(world: TwoFactorWorld, email: str = "trader@example.com") -> str:
    client = world.service.client
    r = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": "Trader"}
    )
    assert r.status_code == 202, r.text
    body = world.service.container.mailer.messages[-1].body  # type: ignore[attr-defined]
    token = re.search(r"verify-email\?token=([A-Za-z0-9_-]+)", body).group(1)  # type: ignore[union-attr]
    assert (await client.post("/api/v1/auth/verify-email", json={"token": token})).status_code == 200
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def enrol(world: TwoFactorWorld, access: str) -> tuple[str, list[str]]:
    client = world.service.client
    r = await client.post("/api/v1/me/2fa/totp/setup", json={"password": PASSWORD}, headers=bearer(access))
    assert r.status_code == 200, r.text
    setup = r.json()
    r = await client.post(
        "/api/v1/me/2fa/totp/confirm", json={"code": world.code(setup["secret"])}, headers=bearer(access)
    )
    assert r.status_code == 200, r.text
    return setup["secret"], r.json()["recovery_codes"]


async def password_step(world: TwoFactorWorld, email: str = "trader@example.com") -> str:
    r = await world.service.client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mfa_required"] is True and body["methods"] == ["totp", "recovery_code"]
    assert "access_token" not in body and "set-cookie" not in r.headers
    return str(body["mfa_token"])


async def test_enrolment_end_to_end(world: TwoFactorWorld) -> None:
    client = world.service.client
    access = await signed_in(world)
    r = await client.post("/api/v1/me/2fa/totp/setup", json={"password": PASSWORD}, headers=bearer(access))
    assert r.status_code == 200, r.text
    setup = r.json()
    assert re.fullmatch(r"[A-Z2-7]{32}", setup["secret"])  # 160 bits of base32
    assert setup["otpauth_uri"].startswith("otpauth://totp/Bulwark:trader@example.com?")
    assert f"secret={setup['secret']}" in setup["otpauth_uri"]
    assert [b.text for b in decode_svg_qr(setup["qr_svg"])] == [setup["otpauth_uri"]]
    # Pending until confirmed: login still needs no code, and status says off.
    assert (await client.get("/api/v1/me/2fa", headers=bearer(access))).json()["enabled"] is False

    r = await client.post("/api/v1/me/2fa/totp/confirm", json={"code": "000000"}, headers=bearer(access))
    assert r.status_code == 401 and r.json()["code"] == "invalid_mfa_code"
    r = await client.post(
        "/api/v1/me/2fa/totp/confirm", json={"code": world.code(setup["secret"])}, headers=bearer(access)
    )
    assert r.status_code == 200, r.text
    codes = r.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(len(code.replace("-", "")) * 5 >= 50 for code in codes)  # >= 50 bits each

    status = (await client.get("/api/v1/me/2fa", headers=bearer(access))).json()
    assert status["enabled"] is True and status["recovery_codes_left"] == 10 and status["confirmed_at"]
    # Never returned again once confirmed.
    r = await client.post("/api/v1/me/2fa/totp/setup", json={"password": PASSWORD}, headers=bearer(access))
    assert r.status_code == 409


async def test_login_with_a_code_and_the_same_code_is_never_accepted_twice(world: TwoFactorWorld) -> None:
    client = world.service.client
    secret, _ = await enrol(world, await signed_in(world))
    world.clock.advance(30)  # the enrolment consumed this step's code
    code = world.code(secret)

    r = await client.post(
        "/api/v1/auth/login/2fa", json={"mfa_token": await password_step(world), "code": code}
    )
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "Bearer" and "bulwark_refresh" in r.headers["set-cookie"]

    # Replay inside its own window, on a fresh password step: refused, with the same error.
    replay = await client.post(
        "/api/v1/auth/login/2fa", json={"mfa_token": await password_step(world), "code": code}
    )
    wrong = await client.post(
        "/api/v1/auth/login/2fa", json={"mfa_token": await password_step(world), "code": "123456"}
    )
    assert replay.status_code == wrong.status_code == 401
    assert replay.json()["code"] == wrong.json()["code"] == "invalid_mfa_code"
    assert replay.json()["detail"] == wrong.json()["detail"]
    async with world.service.container.engine.connect() as conn:
        actions = [row[0] for row in await conn.execute(text("SELECT action FROM audit_events"))]
    assert "mfa.replay_refused" in actions and "mfa.failure" in actions


async def test_adjacent_steps_pass_and_two_steps_away_are_refused(world: TwoFactorWorld) -> None:
    client = world.service.client
    secret, _ = await enrol(world, await signed_in(world))
    world.clock.advance(120)
    for offset in (-2, 2):
        r = await client.post(
            "/api/v1/auth/login/2fa",
            json={"mfa_token": await password_step(world), "code": world.code(secret, offset)},
        )
        assert r.status_code == 401, offset
    r = await client.post(
        "/api/v1/auth/login/2fa",
        json={"mfa_token": await password_step(world), "code": world.code(secret, 1)},
    )
    assert r.status_code == 200, r.text


async def test_recovery_code_works_once_and_the_count_drops(world: TwoFactorWorld) -> None:
    client = world.service.client
    _, codes = await enrol(world, await signed_in(world))
    token = await password_step(world)
    r = await client.post(
        "/api/v1/auth/login/2fa", json={"mfa_token": token, "recovery_code": codes[0].lower()}
    )
    assert r.status_code == 200, r.text
    access = r.json()["access_token"]
    assert (await client.get("/api/v1/me/2fa", headers=bearer(access))).json()["recovery_codes_left"] == 9

    r = await client.post(
        "/api/v1/auth/login/2fa", json={"mfa_token": await password_step(world), "recovery_code": codes[0]}
    )
    assert r.status_code == 401 and r.json()["code"] == "invalid_mfa_code"
    async with world.service.container.engine.connect() as conn:
        used = (
            await conn.execute(
                text("SELECT count(*) FROM audit_events WHERE action = 'mfa.recovery_code_used'")
            )
        ).scalar_one()
    assert used == 1


async def test_mfa_token_is_no_bearer_token_and_dies_after_five_failures(world: TwoFactorWorld) -> None:
    client = world.service.client
    secret, _ = await enrol(world, await signed_in(world))
    world.clock.advance(30)
    token = await password_step(world)
    assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 401

    for _ in range(5):
        r = await client.post("/api/v1/auth/login/2fa", json={"mfa_token": token, "code": "000000"})
        assert r.status_code == 401 and r.json()["code"] == "invalid_mfa_code"
    r = await client.post("/api/v1/auth/login/2fa", json={"mfa_token": token, "code": world.code(secret)})
    assert r.status_code == 401 and r.json()["code"] == "invalid_mfa_token"


async def test_mfa_token_expires_after_five_minutes(world: TwoFactorWorld) -> None:
    client = world.service.client
    secret, _ = await enrol(world, await signed_in(world))
    token = await password_step(world)
    world.clock.advance(301)
    r = await client.post("/api/v1/auth/login/2fa", json={"mfa_token": token, "code": world.code(secret)})
    assert r.status_code == 401 and r.json()["code"] == "invalid_mfa_token"


async def test_totp_secret_is_unreadable_in_a_database_dump(world: TwoFactorWorld) -> None:
    secret, codes = await enrol(world, await signed_in(world))
    dump = []
    async with world.service.container.engine.connect() as conn:
        for table in ("totp_credentials", "recovery_codes", "audit_events", "users"):
            for row in await conn.execute(text(f"SELECT * FROM {table}")):  # noqa: S608 - fixed names
                dump.append(repr(tuple(row)))
        envelope = (await conn.execute(text("SELECT secret_envelope FROM totp_credentials"))).scalar_one()
    blob = "\n".join(dump)
    assert secret not in blob and secret.encode() not in bytes(envelope)
    assert not any(code in blob or code.replace("-", "") in blob for code in codes)


async def test_disabling_needs_the_password_and_a_second_factor(world: TwoFactorWorld) -> None:
    client = world.service.client
    access = await signed_in(world)
    secret, _ = await enrol(world, access)
    world.clock.advance(30)
    other = await client.post(
        "/api/v1/auth/login/2fa", json={"mfa_token": await password_step(world), "code": world.code(secret)}
    )
    other_access = other.json()["access_token"]
    world.clock.advance(30)

    r = await client.request("DELETE", "/api/v1/me/2fa", json={"password": PASSWORD}, headers=bearer(access))
    assert r.status_code == 401
    r = await client.request(
        "DELETE",
        "/api/v1/me/2fa",
        json={"password": "wrong password entirely!", "code": world.code(secret)},
        headers=bearer(access),
    )
    assert r.status_code == 401
    assert (await client.get("/api/v1/me/2fa", headers=bearer(access))).json()["enabled"] is True

    r = await client.request(
        "DELETE",
        "/api/v1/me/2fa",
        json={"password": PASSWORD, "code": world.code(secret)},
        headers=bearer(access),
    )
    assert r.status_code == 204, r.text
    assert (await client.get("/api/v1/me/2fa", headers=bearer(access))).json()["enabled"] is False
    assert (await client.get("/api/v1/me", headers=bearer(other_access))).status_code == 401  # others revoked
    r = await client.post("/api/v1/auth/login", json={"email": "trader@example.com", "password": PASSWORD})
    assert "access_token" in r.json()


async def test_sensitive_actions_need_a_recent_authentication_and_reauth_restores_it(
    world: TwoFactorWorld,
) -> None:
    client = world.service.client
    access = await signed_in(world)
    secret, _ = await enrol(world, access)
    world.clock.advance(11 * 60)  # past the 10-minute step-up window; the access token still lives

    r = await client.post(
        "/api/v1/me/2fa/recovery-codes", json={"code": world.code(secret)}, headers=bearer(access)
    )
    assert r.status_code == 401 and r.json()["code"] == "reauth_required"

    r = await client.post("/api/v1/auth/reauth", json={"password": PASSWORD}, headers=bearer(access))
    assert r.status_code == 401  # 2FA is on: the code is needed too
    r = await client.post(
        "/api/v1/auth/reauth", json={"password": PASSWORD, "code": world.code(secret)}, headers=bearer(access)
    )
    assert r.status_code == 200, r.text
    fresh = r.json()["access_token"]
    world.clock.advance(30)
    r = await client.post(
        "/api/v1/me/2fa/recovery-codes", json={"code": world.code(secret)}, headers=bearer(fresh)
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["recovery_codes"]) == 10


async def test_a_spent_second_factor_budget_on_reauth_stalls_nobody_else(
    world_settings: Settings, redis_namespace: str
) -> None:
    """The limit trip writes its own audit entry; it once did so while the reauth's own unit still
    held SQLite's writer lock, so the request waited on itself (~30 s) and every other writer,
    another user's login included, waited behind it."""
    settings = dataclasses.replace(world_settings, mfa_limit_per_user="2/300")
    start = datetime.fromtimestamp((int(datetime.now(UTC).timestamp()) // 30) * 30 + 1, UTC)
    clock = PinnedClock(start)
    async for service in start_service(settings, redis_namespace, clock=clock):
        world = TwoFactorWorld(service, clock)
        client = service.client
        access = await signed_in(world)
        await enrol(world, access)  # the confirmation spends one attempt of the budget
        await signed_in(world, "bystander@example.com")
        wrong = {"password": PASSWORD, "code": "000000"}
        r = await client.post("/api/v1/auth/reauth", json=wrong, headers=bearer(access))
        assert r.status_code == 401, r.text

        started = time.monotonic()
        tripped, login = await asyncio.gather(
            client.post("/api/v1/auth/reauth", json=wrong, headers=bearer(access)),
            client.post("/api/v1/auth/login", json={"email": "bystander@example.com", "password": PASSWORD}),
        )
        elapsed = time.monotonic() - started
        assert tripped.status_code == 429, tripped.text
        assert login.status_code == 200, login.text
        assert elapsed < 5, f"a tripped reauth held others up for {elapsed:.1f}s"


async def test_closing_an_account_with_two_factor_needs_its_code(world: TwoFactorWorld) -> None:
    client = world.service.client
    access = await signed_in(world, "closer@example.com")
    secret, _ = await enrol(world, access)
    world.clock.advance(30)
    for body in ({"password": PASSWORD}, {"password": PASSWORD, "code": world.code(secret, offset=5)}):
        r = await client.request("DELETE", "/api/v1/me", json=body, headers=bearer(access))
        assert r.status_code == 401, r.text
        assert (await client.get("/api/v1/me", headers=bearer(access))).status_code == 200  # still open
    r = await client.request(
        "DELETE",
        "/api/v1/me",
        json={"password": PASSWORD, "code": world.code(secret)},
        headers=bearer(access),
    )
    assert r.status_code == 204, r.text
    assert (await client.get("/api/v1/me", headers=bearer(access))).status_code == 401
