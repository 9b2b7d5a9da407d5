"""Platform admin login (issue 18, separate credentials and lockout) through the HTTP app, on both
backends, at a pinned clock: all three factors, admin and user tokens kept apart, the admin
session's limits, and the lock under parallel guessing.

TOTP codes come from the independent RFC 6238 reference in the TOTP adapter tests."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from application.errors import InvalidInput
from application.ports.password_hasher import PasswordCheck, PasswordHasher
from entrypoints.settings import Settings
from tests.e2e.admin_helpers import (
    ADMIN_COOKIE,
    ADMIN_PASSWORD,
    LOGIN,
    ME,
    AdminWorld,
    admin_cookie,
    admin_settings,
    refusal,
    start_world,
    with_admin,
)
from tests.e2e.identity_helpers import (
    NO_BODY,
    PASSWORD,
    audit_rows,
    bearer,
    browser,
    login,
    register_verified,
    sent_mail,
    set_cookies,
    unique_email,
)


class CountingHasher:
    """The admin hasher, counting the verifications that actually ran."""

    def __init__(self, inner: PasswordHasher) -> None:
        self.inner = inner
        self.verifications = 0

    async def hash(self, password: str) -> tuple[str, str]:
        return await self.inner.hash(password)

    async def verify(self, password: str, stored_hash: str, pepper_version: str) -> PasswordCheck:
        self.verifications += 1
        return await self.inner.verify(password, stored_hash, pepper_version)

    async def burn(self, password: str) -> None:
        await self.inner.burn(password)


@pytest.fixture
def roomy_settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    # A roomy allowance: these tests are about the factors, not the lock.
    return admin_settings(backend, tmp_path, request, admin_login_limit_per_account="100/900")


@pytest.fixture
def strict_settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """The default account tiers: 5 attempts in 15 minutes."""
    return admin_settings(backend, tmp_path, request, admin_login_limit_per_ip="200/900")


@pytest.fixture
def growing_settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return admin_settings(
        backend, tmp_path, request, admin_login_limit_per_account="3/3600", admin_lockout_seconds="60,120"
    )


@pytest.fixture
def per_ip_settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return admin_settings(
        backend, tmp_path, request, admin_login_limit_per_ip="4/900", admin_login_limit_per_account="100/900"
    )


@pytest.fixture
async def world(roomy_settings: Settings, redis_namespace: str) -> AsyncIterator[AdminWorld]:
    async for world in start_world(roomy_settings, redis_namespace):
        yield world


@pytest.fixture
async def strict_world(strict_settings: Settings, redis_namespace: str) -> AsyncIterator[AdminWorld]:
    async for world in start_world(strict_settings, redis_namespace):
        yield world


@pytest.fixture
async def growing_world(growing_settings: Settings, redis_namespace: str) -> AsyncIterator[AdminWorld]:
    async for world in start_world(growing_settings, redis_namespace):
        yield world


@pytest.fixture
async def per_ip_world(per_ip_settings: Settings, redis_namespace: str) -> AsyncIterator[AdminWorld]:
    async for world in start_world(per_ip_settings, redis_namespace):
        yield world


WRONG = (401, "invalid_credentials", "The email, admin password or code is wrong.")


# -- all three factors -------------------------------------------------------------------------


async def test_admin_login_needs_all_three_factors(world: AdminWorld) -> None:
    email, enrolment = await world.admin()
    code = world.code(enrolment)

    # Each factor missing or wrong in turn: the same refusal, and no cookie.
    attempts = [
        (email, "not the admin password at all", code),
        (email, PASSWORD, code),  # the user password never stands in for the admin one
        (email, ADMIN_PASSWORD, "000000" if code != "000000" else "111111"),
        (email, ADMIN_PASSWORD, "ABCD-EFGH-JKLM"),  # no such recovery code
        ("someone-else@example.com", ADMIN_PASSWORD, code),
    ]
    for attempt in attempts:
        r = await world.login(*attempt)
        assert refusal(r) == WRONG, (attempt, r.text)
        assert ADMIN_COOKIE not in set_cookies(r)

    # Bad input is a 400 that counts nothing and changes nothing.
    for body in (
        {"email": email, "admin_password": ADMIN_PASSWORD},
        {"email": email, "admin_password": ADMIN_PASSWORD, "totp_code": ""},
        {"email": email, "admin_password": ADMIN_PASSWORD, "totp_code": code, "extra": 1},
        {"email": email, "admin_password": "x" * 5000, "totp_code": code},
    ):
        r = await world.client.post(LOGIN, json=body)
        assert r.status_code == 400, r.text
        assert r.headers["content-type"].startswith("application/problem+json")

    r = await world.login(email, ADMIN_PASSWORD, code)
    assert r.status_code == 200, r.text
    assert r.json()["email"] == email
    assert r.headers["cache-control"] == "no-store"
    [header] = [h for h in r.headers.get_list("set-cookie") if h.startswith(f"{ADMIN_COOKIE}=")]
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/", "Max-Age=28800"):
        assert attribute in header, header
    token = admin_cookie(r)
    me = await world.client.get(ME, headers=with_admin(token))
    assert me.status_code == 200, me.text
    assert me.json()["user_id"] == str(enrolment.user_id)

    # A code works once: the same code again (all else right) is refused.
    assert refusal(await world.login(email, ADMIN_PASSWORD, code)) == WRONG

    # A recovery code stands in for the TOTP code, once.
    recovery = enrolment.recovery_codes[0]
    assert (await world.login(email, ADMIN_PASSWORD, recovery)).status_code == 200
    assert refusal(await world.login(email, ADMIN_PASSWORD, recovery)) == WRONG

    reasons = sorted(row.details["reason"] for row in await audit_rows(world.service, "admin.login.failure"))
    assert reasons.count("wrong_password") == 2 and "unknown_account" in reasons
    assert reasons.count("wrong_code") == 4  # wrong, unknown recovery, replayed TOTP, reused recovery
    assert len(await audit_rows(world.service, "admin.login.success")) == 2


async def test_the_origin_rules_apply_to_admin_login(world: AdminWorld) -> None:
    email, enrolment = await world.admin()
    body = {"email": email, "admin_password": ADMIN_PASSWORD, "totp_code": world.code(enrolment)}
    for headers in ({"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"}):
        r = await world.client.post(LOGIN, json=body, headers=headers)
        assert r.status_code == 403 and r.json()["code"] == "origin_not_allowed", r.text


async def test_admin_password_equal_to_the_user_password_is_refused(world: AdminWorld) -> None:
    email = await register_verified(world.service)
    with pytest.raises(InvalidInput) as refused:
        await world.service.container.admin.create(email, PASSWORD)
    assert refused.value.code == "admin_password_reused"
    assert await world.service.container.admin.list_admins() == []


# -- admin and user tokens never cross ----------------------------------------------------------


async def test_admin_and_user_tokens_are_not_interchangeable(world: AdminWorld) -> None:
    email, enrolment = await world.admin()
    user = await login(world.client, email, PASSWORD)
    r = await world.login(email, ADMIN_PASSWORD, world.code(enrolment))
    assert r.status_code == 200, r.text
    admin_token = admin_cookie(r)
    assert (await world.client.get(ME, headers=with_admin(admin_token))).status_code == 200
    assert (await world.client.get("/api/v1/me", headers=user.headers)).status_code == 200

    # A user token on admin routes: as a bearer, or smuggled into the admin cookie.
    for headers in (user.headers, with_admin(user.access)):
        r = await world.client.get(ME, headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "invalid_admin_session", r.text
    # A bearer header beside a good admin cookie is refused too (admin routes take the cookie only).
    r = await world.client.get(ME, headers={**with_admin(admin_token), **user.headers})
    assert r.status_code == 401, r.text

    # An admin token on user routes: as a bearer, or as the user refresh cookie.
    r = await world.client.get("/api/v1/me", headers=bearer(admin_token))
    assert r.status_code == 401 and r.json()["code"] == "invalid_token", r.text
    r = await world.client.get("/api/v1/me", headers=with_admin(admin_token))
    assert r.status_code == 401, r.text
    r = await world.client.post(
        "/api/v1/auth/refresh", headers={"cookie": f"bulwark_refresh={admin_token}", **NO_BODY}
    )
    assert r.status_code == 401, r.text


# -- the admin session -------------------------------------------------------------------------


async def test_admin_logout_ends_the_session(world: AdminWorld) -> None:
    email, enrolment = await world.admin()
    token = admin_cookie(await world.login(email, ADMIN_PASSWORD, world.code(enrolment)))
    r = await world.client.post("/api/admin/v1/logout", headers={**with_admin(token), **NO_BODY})
    assert r.status_code == 204, r.text
    assert any(h.startswith(f"{ADMIN_COOKIE}=;") for h in r.headers.get_list("set-cookie"))
    assert (await world.client.get(ME, headers=with_admin(token))).status_code == 401
    assert len(await audit_rows(world.service, "admin.logout")) == 1


async def test_admin_session_idles_out_and_ends_absolutely(world: AdminWorld) -> None:
    email, enrolment = await world.admin()
    token = admin_cookie(await world.login(email, ADMIN_PASSWORD, world.code(enrolment)))
    world.clock.advance(29 * 60)
    assert (await world.client.get(ME, headers=with_admin(token))).status_code == 200
    world.clock.advance(29 * 60)  # used 29 minutes ago: still alive
    assert (await world.client.get(ME, headers=with_admin(token))).status_code == 200
    world.clock.advance(31 * 60)
    assert (await world.client.get(ME, headers=with_admin(token))).status_code == 401

    world.clock.advance(60)
    token = admin_cookie(await world.login(email, ADMIN_PASSWORD, world.code(enrolment)))
    for _ in range(19):  # used every 25 minutes: 7 h 55 min
        world.clock.advance(25 * 60)
        assert (await world.client.get(ME, headers=with_admin(token))).status_code == 200
    world.clock.advance(25 * 60)  # past 8 hours since login, however busy
    assert (await world.client.get(ME, headers=with_admin(token))).status_code == 401


# -- lockout -----------------------------------------------------------------------------------


async def test_lockout_under_50_parallel_guesses(strict_world: AdminWorld) -> None:
    world = strict_world
    container = world.service.container
    email, enrolment = await world.admin()
    counting = CountingHasher(container.admin.login.deps.hasher)
    container.admin.login.deps.hasher = counting

    guesses = [world.login(email, f"guess number {i} of many", world.code(enrolment)) for i in range(50)]
    answers = await asyncio.gather(*guesses)
    assert {refusal(r) for r in answers} == {WRONG}
    # Counted before hashing, atomically: at most the allowance was ever verified.
    assert counting.verifications <= 5
    reasons = [row.details["reason"] for row in await audit_rows(world.service, "admin.login.failure")]
    assert len(reasons) == 50 and reasons.count("wrong_password") <= 5
    assert len(await audit_rows(world.service, "admin.locked")) == 1
    [notice] = [m for m in sent_mail(world.service, email) if "locked" in m.subject]
    assert "bulwark admin unlock" in notice.body

    # Locked: the right factors answer exactly like a wrong password, without being verified.
    verified = counting.verifications
    world.clock.advance(30)
    assert refusal(await world.login(email, ADMIN_PASSWORD, world.code(enrolment))) == WRONG
    assert counting.verifications == verified
    [listed] = await container.admin.list_admins()
    assert listed.locked_until is not None
    # The lock holds by itself once the limiter's window has emptied (as after 15 minutes).
    await container.limiter.reset(f"admin-login-account:900:{email}")
    assert refusal(await world.login(email, ADMIN_PASSWORD, world.code(enrolment))) == WRONG
    assert counting.verifications == verified

    # The operator's unlock lifts it (and the counted failures) at once.
    assert await container.admin.unlock(email)
    assert (await world.login(email, ADMIN_PASSWORD, world.code(enrolment))).status_code == 200
    assert len(await audit_rows(world.service, "admin.unlocked")) == 1


async def test_a_lock_is_temporary_and_grows(growing_world: AdminWorld) -> None:
    world = growing_world
    email, enrolment = await world.admin()

    async def fail_until_locked() -> None:
        for i in range(3):
            assert refusal(await world.login(email, f"wrong {i}", world.code(enrolment))) == WRONG

    async def window_passes() -> None:
        await world.service.container.limiter.reset(f"admin-login-account:3600:{email}")

    await fail_until_locked()  # the failure that uses up the allowance locks at once
    assert refusal(await world.login(email, ADMIN_PASSWORD, world.code(enrolment))) == WRONG
    world.clock.advance(61)
    await window_passes()  # the limiter's window runs on real time: as if it had emptied
    await fail_until_locked()  # no good login between: the second lock lasts longer
    world.clock.advance(61)
    await window_passes()
    assert refusal(await world.login(email, ADMIN_PASSWORD, world.code(enrolment))) == WRONG
    world.clock.advance(60)
    assert (await world.login(email, ADMIN_PASSWORD, world.code(enrolment))).status_code == 200
    locks = await audit_rows(world.service, "admin.locked")
    assert [row.details["lock_number"] for row in locks] == [1, 2]
    assert [row.details["lock_seconds"] for row in locks] == [60, 120]


async def test_parallel_guesses_from_one_ip_are_limited_without_locking(per_ip_world: AdminWorld) -> None:
    world = per_ip_world
    email, enrolment = await world.admin()
    container = world.service.container
    counting = CountingHasher(container.admin.login.deps.hasher)
    container.admin.login.deps.hasher = counting
    guesses = [world.login(email, f"guess {i}", world.code(enrolment)) for i in range(20)]
    assert {refusal(r) for r in await asyncio.gather(*guesses)} == {WRONG}
    assert counting.verifications <= 4
    # The IP limit never locks the account itself: another address signs in.
    async with browser(world.service, ip="198.51.100.9") as other:
        r = await world.login(email, ADMIN_PASSWORD, world.code(enrolment), client=other)
        assert r.status_code == 200, r.text


async def test_a_new_account_is_created_verified_when_none_has_the_email(world: AdminWorld) -> None:
    email = unique_email("admin")
    enrolment = await world.service.container.admin.create(email, ADMIN_PASSWORD)
    assert enrolment.created_account and len(enrolment.recovery_codes) == 10
    assert enrolment.otpauth_uri.startswith("otpauth://totp/")
    assert (await world.login(email, ADMIN_PASSWORD, world.code(enrolment))).status_code == 200
