"""Rate limits at their configured sizes, end to end on both backends: login per account and per
IP, forgot/resend per address, register per IP. Known and unknown addresses count alike."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from entrypoints.settings import Settings
from tests.e2e.conftest import Service
from tests.e2e.identity_helpers import (
    FAST_ARGON2,
    PASSWORD,
    audit_rows,
    browser,
    login_response,
    register,
    register_verified,
    service_with,
    unique_email,
)

WRONG = "definitely not the password"
LIMIT = 3

ServiceFactory = Callable[..., Any]


@pytest.fixture
async def limited(service_settings: Settings, redis_namespace: str) -> AsyncIterator[ServiceFactory]:
    """Opens the service of this backend with the given limits (closed after the test)."""
    async with contextlib.AsyncExitStack() as stack:

        async def open_service(**overrides: Any) -> Service:
            return await stack.enter_async_context(
                service_with(service_settings, redis_namespace, **FAST_ARGON2, **overrides)
            )

        yield open_service


def assert_limited(response: httpx.Response, window: float) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["code"] == "rate_limited"
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= window


# -- login per account -------------------------------------------------------------------------


@pytest.mark.parametrize("known", [True, False], ids=["known_email", "unknown_email"])
async def test_login_per_account_limit_refuses_even_the_right_password(
    limited: ServiceFactory, known: bool
) -> None:
    service = await limited(login_limit_per_account=f"{LIMIT}/60")
    email = await register_verified(service) if known else unique_email("nobody")
    answers = [await login_response(service.client, email, WRONG) for _ in range(LIMIT)]
    assert [r.status_code for r in answers] == [401] * LIMIT
    assert_limited(await login_response(service.client, email, PASSWORD), 60)
    # Another address from the same IP is not affected.
    other = await register_verified(service)
    assert (await login_response(service.client, other)).status_code == 200
    assert await audit_rows(service, "rate_limit.tripped")


async def test_known_and_unknown_emails_are_limited_identically(limited: ServiceFactory) -> None:
    service = await limited(login_limit_per_account=f"{LIMIT}/60")
    known = await register_verified(service)
    unknown = unique_email("nobody")
    sequences = []
    for email in (known, unknown):
        answers = [await login_response(service.client, email, WRONG) for _ in range(LIMIT + 2)]
        sequences.append([(r.status_code, r.json()["code"]) for r in answers])
    assert sequences[0] == sequences[1]
    assert sequences[0] == [(401, "invalid_credentials")] * LIMIT + [(429, "rate_limited")] * 2


async def test_parallel_wrong_guesses_cannot_slip_past_the_account_limit(limited: ServiceFactory) -> None:
    service = await limited(login_limit_per_account=f"{LIMIT}/60")
    email = await register_verified(service)
    answers = await asyncio.gather(*(login_response(service.client, email, WRONG) for _ in range(20)))
    admitted = [r for r in answers if r.status_code != 429]
    assert len(admitted) <= LIMIT, [r.status_code for r in answers]
    assert {r.status_code for r in admitted} == {401}
    assert sum(r.status_code == 429 for r in answers) >= 20 - LIMIT


async def test_account_lockout_is_temporary(limited: ServiceFactory) -> None:
    service = await limited(login_limit_per_account=f"{LIMIT}/2")
    email = await register_verified(service)
    # At once, so that the window is still open for the next attempt on a busy machine.
    await asyncio.gather(*(login_response(service.client, email, WRONG) for _ in range(LIMIT)))
    assert_limited(await login_response(service.client, email), 2)
    await asyncio.sleep(2.1)
    assert (await login_response(service.client, email)).status_code == 200


# -- login per IP ------------------------------------------------------------------------------


async def test_login_per_ip_limit_spans_accounts_and_spares_other_ips(limited: ServiceFactory) -> None:
    service = await limited(login_limit_per_ip=f"{LIMIT}/60")
    async with browser(service, ip="198.51.100.1") as attacker, browser(service, ip="198.51.100.2") as user:
        answers = [await login_response(attacker, unique_email(), WRONG) for _ in range(LIMIT)]
        assert [r.status_code for r in answers] == [401] * LIMIT
        assert_limited(await login_response(attacker, unique_email(), WRONG), 60)
        assert (await login_response(user, unique_email(), WRONG)).status_code == 401


# -- forgot / resend per address ---------------------------------------------------------------


MailEndpoint = Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]]


async def forgot(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post("/api/v1/auth/password/forgot", json={"email": email})


async def resend(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post("/api/v1/auth/verify-email/resend", json={"email": email})


@pytest.mark.parametrize("known", [True, False], ids=["known_email", "unknown_email"])
async def test_mail_requests_are_limited_per_address(limited: ServiceFactory, known: bool) -> None:
    service = await limited(mail_limit_per_address="2/60")
    email = unique_email()
    if known:
        await register(service.client, email)
    async with browser(service, ip="198.51.100.3") as elsewhere:
        # forgot and resend share the per-address budget, whichever IP asks.
        assert (await forgot(service.client, email)).status_code == 202
        assert (await resend(elsewhere, email)).status_code == 202
        assert_limited(await forgot(elsewhere, email), 60)
        assert_limited(await resend(service.client, email), 60)
        assert (await forgot(service.client, unique_email())).status_code == 202


async def test_mail_requests_are_limited_per_ip(limited: ServiceFactory) -> None:
    service = await limited(mail_limit_per_ip="2/60")
    endpoints: list[MailEndpoint] = [forgot, resend]
    for endpoint in endpoints:
        assert (await endpoint(service.client, unique_email())).status_code == 202
    assert_limited(await forgot(service.client, unique_email()), 60)
    async with browser(service, ip="198.51.100.4") as other:
        assert (await resend(other, unique_email())).status_code == 202


# -- register per IP ---------------------------------------------------------------------------


async def test_register_is_limited_per_ip(limited: ServiceFactory) -> None:
    service = await limited(register_limit_per_ip="2/60")
    for _ in range(2):
        assert (await register(service.client, unique_email())).status_code == 202
    assert_limited(await register(service.client, unique_email()), 60)
    async with browser(service, ip="198.51.100.5") as other:
        assert (await register(other, unique_email())).status_code == 202
