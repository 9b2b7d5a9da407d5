"""Administrators managed from the admin panel (issue 18), on both backends: promotion makes a
pending administrator who enrols by a one-time mailed link; a TOTP login confirms the factor;
demotion ends the administrator's sessions at once; nobody demotes themselves, and two
administrators demoting each other at once leave one. Every change is audited in full."""

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import func, select

from adapters.storage.tables import admin_sessions, platform_admin_recovery_codes, platform_admins
from application.errors import ApplicationError
from application.identity import RequestContext
from application.platform_admin_guard import LastPlatformAdmin, keep_an_admin
from application.use_cases.admin_login import AdminPrincipal
from application.use_cases.platform_admins import AdminEnrolment
from entrypoints.settings import Settings
from tests.e2e.admin_helpers import (
    ADMIN_PASSWORD,
    ME,
    AdminWorld,
    admin_cookie,
    admin_settings,
    start_world,
    with_admin,
)
from tests.e2e.identity_helpers import PASSWORD, audit_rows, last_link, register_verified, unique_email

ADMINS = "/api/admin/v1/admins"
ENROL = "/api/admin/v1/enrolment"
OTHER_ADMIN_PASSWORD = "another long and separate admin passphrase 7"
TEST_IP = "203.0.113.7"


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return admin_settings(backend, tmp_path, request, admin_login_limit_per_account="100/900")


@pytest.fixture
async def world(settings: Settings, redis_namespace: str) -> AsyncIterator[AdminWorld]:
    async for world in start_world(settings, redis_namespace):
        yield world


async def signed_in(world: AdminWorld) -> tuple[str, AdminEnrolment, str]:
    """An administrator made by the operator's command, logged in: (email, enrolment, cookie)."""
    email, enrolment = await world.admin()
    r = await world.login(email, ADMIN_PASSWORD, world.code(enrolment))
    assert r.status_code == 200, r.text
    world.clock.advance(30)  # the next code is a new step
    return email, enrolment, admin_cookie(r)


async def states(world: AdminWorld, token: str) -> dict[str, str]:
    r = await world.client.get(ADMINS, headers=with_admin(token))
    assert r.status_code == 200, r.text
    return {a["email"]: a["state"] for a in r.json()["administrators"]}


async def admin_row_count(world: AdminWorld, table: Any, user_id: UUID) -> int:
    async with world.service.container.engine.connect() as conn:
        query = select(func.count()).select_from(table).where(table.c.user_id == user_id)
        return int((await conn.execute(query)).scalar_one())


async def active_admins(world: AdminWorld) -> list[UUID]:
    async with world.service.container.admin.login.deps.identity.uow() as uow:
        return await uow.platform_admins.active_locked()


def enrolment_of(body: dict[str, Any]) -> AdminEnrolment:
    return AdminEnrolment(UUID(body["user_id"]), body["otpauth_uri"], body["recovery_codes"], False)


async def test_promotion_enrols_by_the_mailed_link_and_a_totp_login_confirms(world: AdminWorld) -> None:
    _, root, token = await signed_in(world)
    email = await register_verified(world.service)

    r = await world.client.post(
        ADMINS, json={"email": email}, headers={**with_admin(token), "user-agent": "panel-test/1"}
    )
    assert r.status_code == 201, r.text
    user_id = UUID(r.json()["user_id"])
    assert r.json()["state"] == "pending"
    assert (await states(world, token))[email] == "pending"
    # Pending: no credentials, no login, not counted.
    assert (await world.login(email, PASSWORD, "123456")).status_code == 401
    assert user_id not in await active_admins(world)

    [promoted] = await audit_rows(world.service, "admin.promoted")
    assert promoted.actor_user_id == root.user_id and promoted.actor_kind == "admin"
    assert promoted.target_id == str(user_id) and promoted.source_ip == TEST_IP
    assert promoted.user_agent == "panel-test/1"
    assert promoted.details["before"] == {"admin": "none"}
    assert promoted.details["after"]["admin"] == "pending"

    link = last_link(world.service, email, "admin/enrolment")
    # Refused choices do not burn the link: the user password, then a weak one.
    r = await world.client.post(ENROL, json={"token": link, "admin_password": PASSWORD})
    assert r.status_code == 400 and r.json()["code"] == "admin_password_reused", r.text
    r = await world.client.post(ENROL, json={"token": link, "admin_password": "short"})
    assert r.status_code == 400 and r.json()["code"] == "weak_password", r.text
    r = await world.client.post(ENROL, json={"token": link + "x", "admin_password": OTHER_ADMIN_PASSWORD})
    assert r.status_code == 400 and r.json()["code"] == "invalid_or_expired_token", r.text

    r = await world.client.post(ENROL, json={"token": link, "admin_password": OTHER_ADMIN_PASSWORD})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    enrolment = enrolment_of(r.json())
    assert enrolment.user_id == user_id and len(enrolment.recovery_codes) == 10
    # Single use.
    again = await world.client.post(ENROL, json={"token": link, "admin_password": OTHER_ADMIN_PASSWORD})
    assert again.status_code == 400 and again.json()["code"] == "invalid_or_expired_token"

    # Enrolled but unconfirmed: still not counted; a TOTP login confirms.
    assert (await states(world, token))[email] == "enrolled"
    assert user_id not in await active_admins(world)
    r = await world.login(email, OTHER_ADMIN_PASSWORD, world.code(enrolment))
    assert r.status_code == 200, r.text
    assert (await states(world, token))[email] == "active"
    assert set(await active_admins(world)) == {root.user_id, user_id}
    confirmed = [
        row
        for row in await audit_rows(world.service, "admin.login.success")
        if row.details["factor_confirmed"]
    ]
    assert [row.actor_user_id for row in confirmed] == [user_id]  # the operator's admin was confirmed already
    [enrolled] = await audit_rows(world.service, "admin.enrolled")
    assert enrolled.details["before"] == {"admin": "pending"} and enrolled.details["after"] == {
        "admin": "enrolled"
    }


async def test_an_enrolment_link_expires_and_promotion_needs_an_active_existing_account(
    world: AdminWorld,
) -> None:
    _, _, token = await signed_in(world)
    email = await register_verified(world.service)
    assert (
        await world.client.post(ADMINS, json={"email": email}, headers=with_admin(token))
    ).status_code == 201
    again = await world.client.post(ADMINS, json={"email": email}, headers=with_admin(token))
    assert again.status_code == 409 and again.json()["code"] == "already_admin"
    link = last_link(world.service, email, "admin/enrolment")
    world.clock.advance(timedelta(hours=24, seconds=1).total_seconds())
    r = await world.client.post(ENROL, json={"token": link, "admin_password": OTHER_ADMIN_PASSWORD})
    assert r.status_code == 400 and r.json()["code"] == "invalid_or_expired_token", r.text

    _, _, token = await signed_in(world)  # the first session idled out meanwhile
    for body, status, code in (
        ({"email": unique_email()}, 404, "user_not_found"),
        ({}, 400, "invalid_request"),
        ({"email": email, "user_id": "00000000-0000-0000-0000-000000000000"}, 400, "invalid_request"),
        ({"email": email, "role": "x"}, 400, None),
    ):
        r = await world.client.post(ADMINS, json=body, headers=with_admin(token))
        assert r.status_code == status and (code is None or r.json()["code"] == code), (body, r.text)
    # Without an admin session nothing is promoted.
    world.client.cookies.clear()
    assert (await world.client.post(ADMINS, json={"email": email})).status_code == 401


async def test_demotion_ends_the_sessions_at_once_and_nobody_demotes_themselves(world: AdminWorld) -> None:
    _, root, token = await signed_in(world)
    other_email, other, other_token = await signed_in(world)
    assert (await world.client.get(ME, headers=with_admin(other_token))).status_code == 200

    r = await world.client.delete(f"{ADMINS}/{root.user_id}", headers=with_admin(token))
    assert r.status_code == 403 and r.json()["code"] == "self_action_forbidden", r.text

    r = await world.client.delete(f"{ADMINS}/{other.user_id}", headers=with_admin(token))
    assert r.status_code == 204, r.text
    assert (await world.client.get(ME, headers=with_admin(other_token))).status_code == 401
    assert await admin_row_count(world, admin_sessions, other.user_id) == 0
    assert await admin_row_count(world, platform_admin_recovery_codes, other.user_id) == 0
    assert await admin_row_count(world, platform_admins, other.user_id) == 0
    assert other_email not in await states(world, token)
    assert (await world.login(other_email, ADMIN_PASSWORD, world.code(other))).status_code == 401
    [demoted] = await audit_rows(world.service, "admin.demoted")
    assert demoted.actor_user_id == root.user_id and demoted.target_id == str(other.user_id)
    assert demoted.details["before"] == {"admin": "active"} and demoted.details["after"] == {"admin": "none"}

    again = await world.client.delete(f"{ADMINS}/{other.user_id}", headers=with_admin(token))
    assert again.status_code == 404

    # The last active administrator stays, whoever asks (here: the guard inside any unit of work).
    async with world.service.container.admin.login.deps.identity.uow() as uow:
        with pytest.raises(LastPlatformAdmin):
            await keep_an_admin(uow, root.user_id)


async def test_unlock_lifts_a_lock_and_is_audited(world: AdminWorld) -> None:
    _, root, token = await signed_in(world)
    _, other, _ = await signed_in(world)
    until = world.clock.at + timedelta(hours=1)
    async with world.service.container.engine.begin() as conn:
        await conn.execute(
            platform_admins.update()
            .where(platform_admins.c.user_id == other.user_id)
            .values(locked_until=until, lock_count=2)
        )
    r = await world.client.post(f"{ADMINS}/{other.user_id}/unlock", headers=with_admin(token))
    assert r.status_code == 200 and r.json() == {"unlocked": True}, r.text
    r = await world.client.post(f"{ADMINS}/{other.user_id}/unlock", headers=with_admin(token))
    assert r.json() == {"unlocked": False}
    missing = await world.client.post(f"{ADMINS}/{UUID(int=7)}/unlock", headers=with_admin(token))
    assert missing.status_code == 404
    first, _ = await audit_rows(world.service, "admin.unlocked")
    assert first.actor_user_id == root.user_id and first.target_id == str(other.user_id)
    assert first.details["before"] == {"locked_until": until.isoformat(), "lock_count": 2}
    assert first.details["after"] == {"locked_until": None, "lock_count": 0}


async def principal_of(world: AdminWorld, token: str) -> AdminPrincipal:
    return await world.service.container.admin.authenticate(token)


async def test_two_admins_demoting_each_other_at_once_leave_one(world: AdminWorld) -> None:
    _, _, survivor_token = await signed_in(world)
    survivor = await principal_of(world, survivor_token)
    demote = world.service.container.admin.demote
    for _ in range(4):
        _, _, newcomer_token = await signed_in(world)
        newcomer = await principal_of(world, newcomer_token)
        assert len(await active_admins(world)) == 2
        # Both already past authentication, each on its own connection and transaction.
        outcomes = await asyncio.gather(
            demote(survivor, newcomer.user_id, _ctx()),
            demote(newcomer, survivor.user_id, _ctx()),
            return_exceptions=True,
        )
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(failures) == 1, outcomes
        assert isinstance(failures[0], ApplicationError) and failures[0].code == "last_platform_admin"
        remaining = await active_admins(world)
        assert len(remaining) == 1
        survivor = survivor if remaining == [survivor.user_id] else newcomer
        assert remaining == [survivor.user_id]


def _ctx() -> RequestContext:
    return RequestContext(ip=TEST_IP, user_agent="race-test")


async def test_admin_routes_need_an_admin_session_and_the_allowlist(world: AdminWorld) -> None:
    for method, path in (
        ("GET", ADMINS),
        ("POST", f"{ADMINS}/{UUID(int=1)}/unlock"),
        ("DELETE", f"{ADMINS}/{UUID(int=1)}"),
    ):
        r = await world.client.request(method, path)
        assert r.status_code == 401, (method, path, r.text)
    outside = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=world.client._transport.app, client=("192.0.2.1", 5)),  # type: ignore[attr-defined]
        base_url="https://bulwark.test",
        headers={"origin": world.client.headers["origin"]},
    )
    async with outside:
        assert (await outside.get(ADMINS)).status_code == 404
        assert (await outside.post(ENROL, json={"token": "x", "admin_password": "y"})).status_code == 404
