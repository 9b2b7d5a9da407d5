"""Shared steps of the admin panel's end-to-end tests: promoting an account to platform
administrator (the CLI's use case), TOTP codes for it, and logging into the panel."""

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx

from application.use_cases.platform_admins import AdminEnrolment
from tests.e2e.conftest import Service
from tests.e2e.identity_helpers import browser, register_verified, set_cookies
from tests.integration.test_totp_adapter import code_at_step

ADMIN_PASSWORD = "an entirely separate admin passphrase 9"
ADMIN_COOKIE = "bulwark_admin"  # development name; production uses __Host-bulwark_admin
ADMIN_LOGIN = "/api/admin/v1/login"
# The panel answers only its allowlist: by default in development, loopback.
LOOPBACK = "127.0.0.1"


def admin_cookie(response: httpx.Response) -> str:
    morsel = set_cookies(response).get(ADMIN_COOKIE)
    assert morsel is not None and morsel.value, response.headers.get_list("set-cookie")
    return str(morsel.value)


def with_admin(token: str) -> dict[str, str]:
    return {"cookie": f"{ADMIN_COOKIE}={token}"}


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
