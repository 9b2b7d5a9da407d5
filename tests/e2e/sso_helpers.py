"""Shared steps of the SSO end-to-end tests: Bulwark wired to the real OpenID provider
(tests/oidc_harness.py: `oidc-provider` on loopback), and the browser's round trip through it.

Bulwark runs in-process (httpx ASGI transport, https://bulwark.test); the provider is a real
server on 127.0.0.1 reached by a second httpx client (the same "browser" seen from the other
site). Each test registers its own clients and users at the provider."""

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from adapters.storage import migrations
from entrypoints.settings import Settings
from tests.e2e.conftest import FRONTEND, Service, make_settings, start_service
from tests.e2e.identity_helpers import COOKIE, bearer, set_cookies
from tests.integration.test_totp_adapter import code_at_step
from tests.oidc_harness import OidcProvider, OidcUser, drive_login_async

BULWARK = "https://bulwark.test"
FLOW_COOKIE = "__Host-bulwark_sso"
MFA_COOKIE = "__Secure-bulwark_sso_mfa"
NO_BODY = {"content-length": "0"}


def callback_url(provider: str) -> str:
    return f"{BULWARK}/api/v1/auth/sso/{provider}/callback"


class PinnedClock:
    """Bulwark's clock, near real time (the provider's tokens are checked against the real one),
    moved by hand for TOTP steps."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@dataclass
class SsoWorld:
    service: Service
    provider: OidcProvider
    clock: PinnedClock
    client_ids: dict[str, str]

    @property
    def client(self) -> httpx.AsyncClient:
        return self.service.client

    def totp(self, secret: str, offset: int = 0) -> str:
        return code_at_step(secret, int(self.clock.at.timestamp()) // 30 + offset)


def sso_settings(
    provider: OidcProvider, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> tuple[Settings, dict[str, str]]:
    clients = {name: provider.add_client(name, [callback_url(name)]) for name in ("google", "azure", "oidc")}
    overrides: dict[str, Any] = {
        "argon2_memory_kib": 19456,
        "mfa_limit_per_user": "50/300",
        "mfa_limit_per_ip": "100/300",
        "sso_redirect_base_url": BULWARK,
        "sso_google_issuer": provider.issuer("google"),
        "sso_google_client_id": clients["google"].client_id,
        "sso_google_client_secret": clients["google"].client_secret,
        "sso_azure_authority": provider.azure_authority,
        "sso_azure_tenant": "common",
        "sso_azure_client_id": clients["azure"].client_id,
        "sso_azure_client_secret": clients["azure"].client_secret,
        "sso_oidc_issuer": provider.issuer("oidc"),
        "sso_oidc_client_id": clients["oidc"].client_id,
        "sso_oidc_client_secret": clients["oidc"].client_secret,
        "sso_oidc_name": "Acme IdP",
    }
    if backend == "embedded":
        settings = make_settings(tmp_path, **overrides)
        migrations.upgrade(settings.effective_database_url)
    else:
        settings = make_settings(
            tmp_path,
            database_url=request.getfixturevalue("app_pg_url"),
            redis_url=request.getfixturevalue("redis_url"),
            **overrides,
        )
    return settings, {name: c.client_id for name, c in clients.items()}


async def start_world(
    provider: OidcProvider, settings: Settings, client_ids: dict[str, str], namespace: str
) -> AsyncIterator[SsoWorld]:
    start = datetime.fromtimestamp((int(datetime.now(UTC).timestamp()) // 30) * 30 + 1, UTC)
    clock = PinnedClock(start)
    async for service in start_service(settings, namespace, clock=clock):
        yield SsoWorld(service, provider, clock, client_ids)


@pytest.fixture
def sso_config(
    oidc_provider: OidcProvider, backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[Settings, dict[str, str]]:
    return sso_settings(oidc_provider, tmp_path, backend, request)


@pytest.fixture
async def sso(
    oidc_provider: OidcProvider, sso_config: tuple[Settings, dict[str, str]], redis_namespace: str
) -> AsyncIterator[SsoWorld]:
    settings, client_ids = sso_config
    try:
        async for world in start_world(oidc_provider, settings, client_ids, redis_namespace):
            yield world
    finally:
        for profile in ("google", "azure", "oidc"):
            oidc_provider.reset(profile)


# -- the round trip ----------------------------------------------------------------------------


async def start(
    client: httpx.AsyncClient, provider: str, return_to: str | None = "/dashboard"
) -> httpx.Response:
    params = {"return_to": return_to} if return_to is not None else {}
    return await client.get(f"/api/v1/auth/sso/{provider}/start", params=params)


async def at_provider(authorize_url: str, user: OidcUser, *, consent: bool = True) -> str:
    """A fresh browser session at the provider: logs in there and returns the callback URL the
    provider sends the browser to (not yet requested)."""
    async with httpx.AsyncClient(timeout=10) as browser:
        return await drive_login_async(
            browser, authorize_url, login=user.login, password=user.password, consent=consent
        )


async def round_trip(
    world: SsoWorld,
    provider: str,
    user: OidcUser,
    *,
    return_to: str | None = "/dashboard",
    client: httpx.AsyncClient | None = None,
) -> httpx.Response:
    """Start, the provider's login, and the callback in the same browser; the callback's answer."""
    client = client or world.client
    started = await start(client, provider, return_to)
    assert started.status_code == 302, started.text
    callback = await at_provider(started.headers["location"], user)
    assert callback.startswith(callback_url(provider)), callback
    return await client.get(callback)


def error_of(response: httpx.Response) -> str | None:
    """The `error` the callback's redirect hands the SPA (None: not a failure redirect)."""
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(FRONTEND), location
    parts = urlsplit(location)
    if parts.path != "/login":
        return None
    return parse_qs(parts.query).get("error", [None])[0]


def refresh_cookie(response: httpx.Response) -> str | None:
    morsel = set_cookies(response).get(COOKIE)
    return str(morsel.value) if morsel is not None and morsel.value else None


def assert_refused(response: httpx.Response, error: str) -> None:
    """A failure redirect with this error, and no session handed out."""
    assert error_of(response) == error, response.headers.get("location")
    assert refresh_cookie(response) is None, response.headers.get_list("set-cookie")
    assert MFA_COOKIE not in set_cookies(response)


async def signed_in(world: SsoWorld, response: httpx.Response) -> dict[str, Any]:
    """The callback signed someone in: its refresh cookie gets an access token; /me of it."""
    assert error_of(response) is None, response.headers.get("location")
    token = refresh_cookie(response)
    assert token is not None, response.headers.get_list("set-cookie")
    r = await world.client.post("/api/v1/auth/refresh", headers={"cookie": f"{COOKIE}={token}"})
    assert r.status_code == 200, r.text
    access = r.json()["access_token"]
    me = await world.client.get("/api/v1/me", headers=bearer(access))
    assert me.status_code == 200, me.text
    body = me.json()
    return {"access": access, "me": body["user"], "org": body["current_org"], "refresh": token}


def google_user(world: SsoWorld, email: str | None = None, **claims: Any) -> OidcUser:
    claims.setdefault("email_verified", True)
    return world.provider.add_user("google", email=email or unique_address(), name="Gail Google", **claims)


def azure_user(world: SsoWorld, email: str | None = None, **claims: Any) -> OidcUser:
    return world.provider.add_user("azure", email=email or unique_address(), name="Aziz Azure", **claims)


def unique_address(prefix: str = "sso") -> str:
    return f"{prefix}-{secrets.token_hex(5)}@example.com"
