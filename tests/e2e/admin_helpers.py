"""Shared by the admin panel's e2e tests: an HTTP app at a pinned clock, administrators made by
the operator's command, admin login with TOTP codes from the RFC 6238 reference, and an
administrator logged into the panel for the tests of its actions."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from adapters.storage import migrations
from application.use_cases.platform_admins import AdminEnrolment
from entrypoints.settings import Settings
from tests.e2e.conftest import Service, make_settings, start_service
from tests.e2e.identity_helpers import browser, register_verified, set_cookies
from tests.integration.test_totp_adapter import code_at_step

ADMIN_PASSWORD = "an entirely separate admin passphrase 9"
ADMIN_COOKIE = "bulwark_admin"  # development name; production uses __Host-bulwark_admin
LOGIN = "/api/admin/v1/login"
ADMIN_LOGIN = LOGIN
ME = "/api/admin/v1/me"
# The panel answers only its allowlist: by default in development, loopback.
LOOPBACK = "127.0.0.1"


class PinnedClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@dataclass
class AdminWorld:
    service: Service
    clock: PinnedClock

    @property
    def client(self) -> httpx.AsyncClient:
        return self.service.client

    def code(self, enrolment: AdminEnrolment, offset: int = 0) -> str:
        secret = parse_qs(urlsplit(enrolment.otpauth_uri).query)["secret"][0]
        return code_at_step(secret, int(self.clock.at.timestamp()) // 30 + offset)

    async def admin(self, email: str | None = None) -> tuple[str, AdminEnrolment]:
        """A verified account with a user password, promoted to administrator."""
        email = await register_verified(self.service, email)
        return email, await self.service.container.admin.create(email, ADMIN_PASSWORD)

    async def login(
        self, email: str, password: str, code: str, client: httpx.AsyncClient | None = None
    ) -> httpx.Response:
        body = {"email": email, "admin_password": password, "totp_code": code}
        return await (client or self.client).post(LOGIN, json=body)


def admin_settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest, **extra: Any) -> Settings:
    # The test clients' addresses (TEST-NET-1 and -2) are the panel's allowed networks here.
    networks = ("203.0.113.0/24", "198.51.100.0/24")
    overrides: dict[str, Any] = {"argon2_memory_kib": 19456, "admin_allowed_networks": networks, **extra}
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


async def start_world(settings: Settings, namespace: str) -> AsyncIterator[AdminWorld]:
    # Near real time, at the start of a TOTP step.
    start = datetime.fromtimestamp((int(datetime.now(UTC).timestamp()) // 30) * 30 + 1, UTC)
    clock = PinnedClock(start)
    async for service in start_service(settings, namespace, clock=clock):
        yield AdminWorld(service, clock)


def admin_cookie(response: httpx.Response) -> str:
    morsel = set_cookies(response).get(ADMIN_COOKIE)
    assert morsel is not None and morsel.value, response.headers.get_list("set-cookie")
    return str(morsel.value)


def with_admin(token: str) -> dict[str, str]:
    return {"cookie": f"{ADMIN_COOKIE}={token}"}


def refusal(response: httpx.Response) -> tuple[int, str, str]:
    """What a caller can tell apart: status, code and detail."""
    body = response.json()
    return response.status_code, body["code"], body["detail"]


def totp_code(enrolment: AdminEnrolment, at: datetime | None = None, offset: int = 0) -> str:
    secret = parse_qs(urlsplit(enrolment.otpauth_uri).query)["secret"][0]
    instant = at or datetime.now(UTC)  # the service's clock: see `panel_login`
    return code_at_step(secret, int(instant.timestamp()) // 30 + offset)


@dataclass(frozen=True)
class PanelAdmin:
    """A platform administrator logged into the panel."""

    email: str
    user_id: str
    token: str  # the admin session cookie's value

    @property
    def headers(self) -> dict[str, str]:
        return with_admin(self.token)


async def panel_login(
    service: Service, email: str, enrolment: AdminEnrolment, ip: str = LOOPBACK, at: datetime | None = None
) -> PanelAdmin:
    # The code of the service's own clock (tests may pin it).
    code = totp_code(enrolment, at or service.container.clock.now())
    body = {"email": email, "admin_password": ADMIN_PASSWORD, "totp_code": code}
    async with browser(service, ip=ip) as panel:
        r = await panel.post(ADMIN_LOGIN, json=body)
    assert r.status_code == 200, r.text
    return PanelAdmin(email, str(enrolment.user_id), admin_cookie(r))


async def platform_admin(
    service: Service, email: str | None = None, ip: str = LOOPBACK, at: datetime | None = None
) -> PanelAdmin:
    """An account (registered and verified unless `email` names one) promoted and logged in."""
    email = email or await register_verified(service)
    enrolment = await service.container.admin.create(email, ADMIN_PASSWORD)
    return await panel_login(service, email, enrolment, ip, at)
