"""Shared steps of the identity end-to-end tests: accounts, mail links, logins, extra browsers.

Tests pass refresh tokens explicitly (a `Cookie` header set on the request wins over the client's
cookie jar), so one client can play several sessions and replay old cookies on purpose."""

import dataclasses
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any, cast

import httpx
from sqlalchemy import select

from adapters.storage.tables import audit_events, users
from application.ports.mailer import MailMessage
from entrypoints.app import create_asgi
from entrypoints.settings import Settings, validate
from tests.e2e.conftest import FRONTEND, Service, start_service

PASSWORD = "correct horse battery staple 42"
NEW_PASSWORD = "a completely different passphrase 7"
COOKIE = "bulwark_refresh"  # development name; production uses the __Secure- prefix
DEFAULT_IP = "203.0.113.7"
# OWASP's floor: a third of the default memory, so tests that log in often stay quick.
FAST_ARGON2: dict[str, Any] = {"argon2_memory_kib": 19456}


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


def bearer(access_token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {access_token}"}


def with_cookie(refresh_token: str) -> dict[str, str]:
    return {"cookie": f"{COOKIE}={refresh_token}"}


# -- mail ------------------------------------------------------------------------------------------


def sent_mail(service: Service, to: str | None = None) -> list[MailMessage]:
    messages: list[MailMessage] = service.container.mailer.messages  # type: ignore[attr-defined]
    return [m for m in messages if to is None or m.to == to]


def link_token(message: MailMessage, kind: str) -> str:
    """The token of the `{frontend}/{kind}?token=...` link in a mail body."""
    match = re.search(rf"{re.escape(FRONTEND)}/{kind}\?token=([A-Za-z0-9_-]+)", message.body)
    assert match, f"no {kind} link in: {message.body!r}"
    return match.group(1)


def last_link(service: Service, to: str, kind: str) -> str:
    relevant = [m for m in sent_mail(service, to) if f"/{kind}?token=" in m.body]
    assert relevant, f"no {kind} mail to {to}: {[m.subject for m in sent_mail(service)]}"
    return link_token(relevant[-1], kind)


# -- accounts and logins ---------------------------------------------------------------------------


async def register(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, name: str = "Test User"
) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/register", json={"email": email, "password": password, "display_name": name}
    )


async def register_verified(service: Service, email: str | None = None, password: str = PASSWORD) -> str:
    email = email or unique_email()
    r = await register(service.client, email, password)
    assert r.status_code == 202, r.text
    r = await service.client.post(
        "/api/v1/auth/verify-email", json={"token": last_link(service, email, "verify-email")}
    )
    assert r.status_code == 200, r.text
    return email


@dataclass(frozen=True)
class LoggedIn:
    access: str
    refresh: str
    body: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access)


def set_cookies(response: httpx.Response) -> dict[str, Any]:
    """The response's Set-Cookie headers, parsed (name -> Morsel)."""
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        jar.load(header)
    return dict(jar)


def refresh_token_of(response: httpx.Response) -> str:
    morsel = set_cookies(response).get(COOKIE)
    assert morsel is not None and morsel.value, response.headers.get_list("set-cookie")
    return str(morsel.value)


async def login_response(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, **kwargs: Any
) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password}, **kwargs)


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> LoggedIn:
    r = await login_response(client, email, password)
    assert r.status_code == 200, r.text
    return LoggedIn(r.json()["access_token"], refresh_token_of(r), r.json())


async def refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post("/api/v1/auth/refresh", headers=with_cookie(refresh_token))


async def me(client: httpx.AsyncClient, access_token: str) -> httpx.Response:
    return await client.get("/api/v1/me", headers=bearer(access_token))


def assert_invalid_token(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "invalid_token", response.text


# -- services and browsers -------------------------------------------------------------------------


@asynccontextmanager
async def service_with(base: Settings, namespace: str, **overrides: Any) -> AsyncIterator[Service]:
    """The service of `base` (same database and Redis) with some settings changed."""
    settings = dataclasses.replace(base, **overrides)
    validate(settings)
    running = cast(AsyncGenerator[Service, None], start_service(settings, namespace))
    service = await anext(running)
    try:
        yield service
    finally:
        await running.aclose()


@asynccontextmanager
async def browser(service: Service, ip: str = DEFAULT_IP) -> AsyncIterator[httpx.AsyncClient]:
    """Another client of the same running service (own cookie jar, own client IP)."""
    app = service.container.extras.get("e2e_asgi")
    if app is None:
        # A second ASGI chain over the same, already started container: no second lifespan.
        app = service.container.extras["e2e_asgi"] = create_asgi(service.container)
    transport = httpx.ASGITransport(app=app, client=(ip, 50001))
    async with httpx.AsyncClient(
        transport=transport, base_url="https://bulwark.test", headers={"origin": FRONTEND}
    ) as client:
        yield client


# -- database --------------------------------------------------------------------------------------


async def audit_rows(service: Service, action: str) -> list[Any]:
    async with service.container.engine.connect() as conn:
        result = await conn.execute(select(audit_events).where(audit_events.c.action == action))
        return list(result)


async def set_user_status(service: Service, email: str, status: str) -> None:
    async with service.container.engine.begin() as conn:
        await conn.execute(users.update().where(users.c.email == email).values(status=status))


# httpx's ASGI transport announces an empty body as a first chunk with more_body=True, which the
# JSON content-type guard reads as "a body follows" (415). Real servers say more_body=False; an
# explicit zero length says the same through httpx.
NO_BODY = {"content-length": "0"}
