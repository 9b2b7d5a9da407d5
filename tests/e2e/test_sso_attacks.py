"""The protections of the SSO flow, each against the real provider on both backends: state replay,
a callback in a browser that did not start the flow (login CSRF), a foreign nonce, an id_token
for another client, issuer mix-up (the RFC 9207 `iss` parameter and the id_token's `iss`), an
expired id_token, a token signed by a key the provider never published, Azure's multi-tenant
issuer checked against `tid`, key rotation, and open-redirect attempts through `return_to`."""

import httpx
import pytest

from tests.e2e.conftest import FRONTEND
from tests.e2e.identity_helpers import service_with
from tests.e2e.sso_helpers import (
    MFA_COOKIE,
    SsoWorld,
    assert_refused,
    at_provider,
    azure_user,
    callback_url,
    google_user,
    round_trip,
    signed_in,
    sso,
    sso_config,
    start,
)
from tests.oidc_harness import AZURE_TENANT, OTHER_AZURE_TENANT

__all__ = ["sso", "sso_config"]


async def test_a_state_works_once(sso: SsoWorld) -> None:
    user = google_user(sso)
    started = await start(sso.client, "google")
    binding = started.headers["set-cookie"].split(";")[0]  # the flow cookie, kept to replay it
    callback = await at_provider(started.headers["location"], user)
    await signed_in(sso, await sso.client.get(callback))
    # the same browser, its cookie sent again: the state record is spent
    assert_refused(await sso.client.get(callback, headers={"cookie": binding}), "invalid_state")
    assert (await sso_failures(sso))[-1] == "unknown_or_used_state"


async def test_a_callback_in_another_browser_is_refused_and_spends_the_state(sso: SsoWorld) -> None:
    """Login CSRF: the attacker starts a flow, logs in at the provider as themselves and sends
    the callback link to a victim, whose browser lacks the flow cookie."""
    attacker = google_user(sso)
    started = await start(sso.client, "google")
    callback = await at_provider(started.headers["location"], attacker)
    app = sso.service.client._transport  # the same app, a browser with an empty cookie jar
    async with httpx.AsyncClient(transport=app, base_url="https://bulwark.test") as victim:
        assert_refused(await victim.get(callback), "invalid_state")
        # a forged cookie is no better than none
        forged = {"cookie": "__Host-bulwark_sso=" + "A" * 43}
        assert_refused(await victim.get(callback, headers=forged), "invalid_state")
    assert_refused(await sso.client.get(callback), "invalid_state")  # spent by the first try


async def test_a_state_from_another_provider_is_refused(sso: SsoWorld) -> None:
    user = google_user(sso)
    started = await start(sso.client, "google")
    callback = await at_provider(started.headers["location"], user)
    moved = callback.replace(callback_url("google"), callback_url("oidc"))
    assert_refused(await sso.client.get(moved), "invalid_state")


async def test_a_state_older_than_ten_minutes_is_refused(sso: SsoWorld) -> None:
    user = google_user(sso)
    started = await start(sso.client, "google")
    callback = await at_provider(started.headers["location"], user)
    sso.clock.advance(601)
    assert_refused(await sso.client.get(callback), "invalid_state")


@pytest.mark.parametrize(
    ("mode", "value", "reason"),
    [
        ("nonce", None, "invalid_claim:nonce"),  # minted for another authorization request
        ("aud", None, "invalid_claim:aud"),  # an id_token for another client (aud and azp)
        # we are among its audiences but not its authorized party
        ("claims", {"aud": ["CLIENT", "another-client"], "azp": "another-client"}, "invalid_claim:azp"),
        ("issuer", None, "invalid_claim:iss"),  # mix-up: another issuer's name, this provider's key
        ("expired", None, "expired"),
        ("claims", {"iat": 1}, "invalid_claim:iat"),  # issued long ago, however far its exp
        ("foreign_key", None, "unknown_kid"),  # signed by a key the provider never published
    ],
)
async def test_a_tampered_id_token_signs_nobody_in(
    sso: SsoWorld, mode: str, value: object, reason: str
) -> None:
    user = google_user(sso)
    if isinstance(value, dict) and value.get("aud") == ["CLIENT", "another-client"]:
        value = {**value, "aud": [sso.client_ids["google"], "another-client"]}
    sso.provider.tamper_next_id_token("google", mode, value)
    assert_refused(await round_trip(sso, "google", user), "sso_failed")
    assert (await sso_failures(sso))[-1] == reason
    # and the same user, untampered, signs in: the refusal was the tampering's
    await signed_in(sso, await round_trip(sso, "google", user))


async def test_an_authorization_response_naming_another_issuer_is_refused_before_the_exchange(
    sso: SsoWorld,
) -> None:
    """RFC 9207: the `iss` of the authorization response names another provider (mix-up)."""
    user = google_user(sso)
    sso.provider.tamper_next_authorization_iss("google", sso.provider.issuer("oidc"))
    assert_refused(await round_trip(sso, "google", user), "sso_failed")
    failures = await sso_failures(sso)
    assert failures[-1] == "iss_parameter_mismatch"


async def test_a_missing_iss_parameter_is_refused_when_the_provider_promises_it(sso: SsoWorld) -> None:
    user = google_user(sso)
    started = await start(sso.client, "google")
    callback = await at_provider(started.headers["location"], user)
    assert "iss=" in callback
    stripped = "&".join(p for p in callback.split("&") if not p.startswith("iss="))
    assert_refused(await sso.client.get(stripped), "sso_failed")
    assert (await sso_failures(sso))[-1] == "iss_parameter_missing"


async def test_azure_multi_tenant_checks_the_issuer_against_the_tokens_own_tid(sso: SsoWorld) -> None:
    user = azure_user(sso, xms_edov=True)
    # the issuer says the user's tenant, the tid claim another: refused, never skipped
    sso.provider.tamper_next_id_token("azure", "claims", {"tid": OTHER_AZURE_TENANT})
    assert_refused(await round_trip(sso, "azure", user), "sso_failed")
    assert (await sso_failures(sso))[-1].startswith("invalid_claim")
    # a user of another tenant, consistent issuer and tid: welcome (multi-tenant)
    other = azure_user(sso, tid=OTHER_AZURE_TENANT, xms_edov=True)
    await signed_in(sso, await round_trip(sso, "azure", other))


async def test_a_key_rotation_is_followed(sso: SsoWorld) -> None:
    user = google_user(sso)
    await signed_in(sso, await round_trip(sso, "google", user))  # the JWKS is cached now
    rotated = sso.provider.rotate_keys("google", keep_old=False)
    assert rotated["signing_kid"] != rotated["previous_kid"]
    await signed_in(sso, await round_trip(sso, "google", user))


async def test_provider_error_and_denied_consent_sign_nobody_in(sso: SsoWorld) -> None:
    user = google_user(sso)
    started = await start(sso.client, "google")
    callback = await at_provider(started.headers["location"], user, consent=False)
    assert "error=access_denied" in callback
    assert_refused(await sso.client.get(callback), "access_denied")


BAD_RETURN_TO = [
    "https://evil.example/",
    "//evil.example/x",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "evil.example",
    "javascript:alert(1)",
    "/ok/../\r\nLocation: https://evil.example",
    "/" + "a" * 600,
    "@evil.example",
]


@pytest.mark.parametrize("return_to", BAD_RETURN_TO)
async def test_return_to_is_only_a_path_on_the_frontend(sso: SsoWorld, return_to: str) -> None:
    r = await start(sso.client, "google", return_to)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "invalid_return_to"
    assert "set-cookie" not in r.headers and "location" not in r.headers


async def test_the_final_redirect_stays_on_the_frontend(sso: SsoWorld) -> None:
    user = google_user(sso)
    r = await round_trip(sso, "google", user, return_to="/orgs/x?y=1#z")
    assert r.headers["location"] == f"{FRONTEND}/orgs/x?y=1#z"
    r = await round_trip(sso, "google", user, return_to=None)
    assert r.headers["location"] == f"{FRONTEND}/"
    for response in (r,):
        assert MFA_COOKIE not in response.headers.get("set-cookie", "")


async def sso_failures(world: SsoWorld) -> list[str]:
    from sqlalchemy import select

    from adapters.storage.tables import audit_events

    async with world.service.container.engine.connect() as conn:
        rows = await conn.execute(
            select(audit_events).where(audit_events.c.action == "sso.failure").order_by(audit_events.c.id)
        )
        return [str(row.details["reason"]) for row in rows]


async def test_a_single_tenant_azure_takes_its_own_tenants_issuer(
    sso: SsoWorld, redis_namespace: str
) -> None:
    """BULWARK_SSO_AZURE_TENANT = a tenant id: that tenant's discovery names its issuer, and a
    token of that tenant signs in (the `common` world above covers the multi-tenant template)."""
    base = sso.service.container.settings
    async with service_with(base, f"{redis_namespace}:tenant", sso_azure_tenant=AZURE_TENANT) as single:
        world = SsoWorld(single, sso.provider, sso.clock, sso.client_ids)
        user = azure_user(world, xms_edov=True)
        session = await signed_in(world, await round_trip(world, "azure", user))
        assert session["me"]["email"] == user.claims["email"]
