"""Single sign-on against a real OpenID provider (oidc-provider on loopback), on both backends:
sign-up, sign-in, linking by a vouched email, the nOAuth refusal, and the refusals a password
login has (paused accounts, disabled orgs)."""

import uuid

import pytest
from sqlalchemy import select

from adapters.storage.tables import audit_events, organisations, sso_identities, users
from tests.e2e.identity_helpers import PASSWORD, link_token, login, register_verified, set_user_status
from tests.e2e.sso_helpers import (
    FLOW_COOKIE,
    SsoWorld,
    assert_refused,
    azure_user,
    error_of,
    google_user,
    round_trip,
    signed_in,
    sso,
    sso_config,
    start,
    unique_address,
)
from tests.oidc_harness import AZURE_TENANT

__all__ = ["sso", "sso_config"]  # the fixture, imported for pytest


async def audit(world: SsoWorld, action: str) -> list[dict[str, object]]:
    async with world.service.container.engine.connect() as conn:
        rows = await conn.execute(select(audit_events).where(audit_events.c.action == action))
        return [dict(row._mapping) for row in rows]


async def identities_in_db(world: SsoWorld) -> list[dict[str, object]]:
    async with world.service.container.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(sso_identities))]


async def test_sign_up_with_a_vouched_email_makes_a_verified_account_and_signs_in(sso: SsoWorld) -> None:
    user = google_user(sso)
    started = await start(sso.client, "google", "/dashboard?tab=1")
    assert started.status_code == 302
    cookie = started.headers["set-cookie"]
    assert cookie.startswith(f"{FLOW_COOKIE}=") and "SameSite=Lax" in cookie and "Path=/;" in cookie
    assert "Secure" in cookie and "HttpOnly" in cookie and "Max-Age=600" in cookie
    location = started.headers["location"]
    assert location.startswith(sso.provider.issuer("google"))
    assert "code_challenge_method=S256" in location and "nonce=" in location and "state=" in location

    r = await round_trip(sso, "google", user)
    assert r.headers["location"] == "https://app.example.com/dashboard"
    session = await signed_in(sso, r)
    assert session["me"]["email"] == user.claims["email"]
    assert session["me"]["email_verified"] is True

    successes = await audit(sso, "login.success")
    assert [e["details"]["method"] for e in successes] == ["sso:google"]
    registered = await audit(sso, "user.registered")
    assert registered[0]["details"]["method"] == "sso:google"
    listed = await sso.client.get(
        "/api/v1/me/identities", headers={"authorization": f"Bearer {session['access']}"}
    )
    assert listed.status_code == 200
    [identity] = listed.json()["identities"]
    assert identity["provider"] == "google" and identity["email"] == user.claims["email"]


async def test_sign_up_without_a_vouched_email_needs_the_mailed_link_first(sso: SsoWorld) -> None:
    user = sso.provider.add_user("oidc", email=unique_address(), email_verified=False)
    r = await round_trip(sso, "oidc", user)
    assert_refused(r, "email_not_verified")
    mails = [m for m in sso.service.container.mailer.messages if m.to == user.claims["email"]]  # type: ignore[attr-defined]
    assert mails and "verify-email?token=" in mails[-1].body
    async with sso.service.container.engine.connect() as conn:
        row = (await conn.execute(select(users).where(users.c.email == user.claims["email"]))).one()
    assert row.email_verified_at is None
    # Pre-account takeover: the unvouched identity is not linked, so proving the address later
    # (by this mail, a reset, another provider) never hands the account to whoever signed up.
    assert await identities_in_db(sso) == []
    verified = await sso.client.post(
        "/api/v1/auth/verify-email", json={"token": link_token(mails[-1], "verify-email")}
    )
    assert verified.status_code == 200, verified.text
    again = await round_trip(sso, "oidc", user)
    assert_refused(again, "sso_link_requires_login")
    assert await identities_in_db(sso) == []


async def test_a_second_sign_in_uses_the_link(sso: SsoWorld) -> None:
    user = google_user(sso)
    first = await signed_in(sso, await round_trip(sso, "google", user))
    second = await signed_in(sso, await round_trip(sso, "google", user))
    assert first["me"]["id"] == second["me"]["id"]
    assert len(await identities_in_db(sso)) == 1


async def test_a_vouched_email_links_the_existing_password_account(sso: SsoWorld) -> None:
    email = await register_verified(sso.service)
    user = google_user(sso, email=email)
    session = await signed_in(sso, await round_trip(sso, "google", user))
    assert session["me"]["email"] == email
    [linked] = await audit(sso, "sso.identity_linked")
    assert linked["details"]["via"] == "verified_email"
    assert (await login(sso.client, email)).access  # the password still works


@pytest.mark.parametrize("claims", [{}, {"xms_edov": False}, {"xms_edov": "true"}, {"email_verified": True}])
async def test_nOAuth_an_azure_email_without_xms_edov_neither_links_nor_signs_in(
    sso: SsoWorld, claims: dict[str, object]
) -> None:
    """Azure's plain `email` is whatever a tenant's administrator typed: only `xms_edov: true`
    vouches for it (and Azure's `email_verified` would mean nothing: it does not send one)."""
    victim = await register_verified(sso.service)
    attacker = azure_user(sso, email=victim, **claims)
    r = await round_trip(sso, "azure", attacker)
    assert_refused(r, "sso_link_requires_login")
    assert await identities_in_db(sso) == []
    [refusal] = await audit(sso, "sso.link_refused")
    assert refusal["details"] == {"provider": "azure", "reason": "email_not_vouched"}
    assert await audit(sso, "login.success") == []


async def test_an_azure_email_with_xms_edov_links(sso: SsoWorld) -> None:
    email = await register_verified(sso.service)
    user = azure_user(sso, email=email, xms_edov=True)
    session = await signed_in(sso, await round_trip(sso, "azure", user))
    assert session["me"]["email"] == email
    [row] = await identities_in_db(sso)
    assert row["issuer"] == f"azure-tenant:{AZURE_TENANT}" and row["subject"] == user.claims["oid"]


@pytest.mark.parametrize("verified", [False, "true", None])
async def test_an_unvouched_google_or_generic_email_does_not_link(sso: SsoWorld, verified: object) -> None:
    victim = await register_verified(sso.service)
    for profile in ("google", "oidc"):
        claims = {} if verified is None else {"email_verified": verified}
        user = sso.provider.add_user(profile, email=victim, **claims)
        assert_refused(await round_trip(sso, profile, user), "sso_link_requires_login")
    assert await identities_in_db(sso) == []


async def test_a_paused_account_is_refused_as_at_password_login(sso: SsoWorld) -> None:
    user = google_user(sso)
    await signed_in(sso, await round_trip(sso, "google", user))
    await set_user_status(sso.service, user.claims["email"], "paused")
    assert_refused(await round_trip(sso, "google", user), "account_paused")
    await set_user_status(sso.service, user.claims["email"], "closed")
    assert_refused(await round_trip(sso, "google", user), "account_suspended")


async def test_a_disabled_org_is_refused_as_at_password_login(sso: SsoWorld) -> None:
    user = google_user(sso)
    session = await signed_in(sso, await round_trip(sso, "google", user))
    async with sso.service.container.engine.begin() as conn:
        await conn.execute(
            organisations.update()
            .where(organisations.c.id == uuid.UUID(session["org"]["id"]))
            .values(status="disabled")
        )
    assert_refused(await round_trip(sso, "google", user), "org_disabled")


async def test_an_unconfigured_or_unknown_provider_is_404(sso: SsoWorld) -> None:
    for name in ("github", "GOOGLE"):
        r = await sso.client.get(f"/api/v1/auth/sso/{name}/start", params={"return_to": "/"})
        assert r.status_code == 404 and r.json()["code"] == "provider_not_configured", r.text
        r = await sso.client.get(f"/api/v1/auth/sso/{name}/callback", params={"state": "x", "code": "y"})
        assert r.status_code == 404 and r.json()["code"] == "provider_not_configured", r.text


async def test_login_rate_limit_per_ip_applies_to_the_callback(sso: SsoWorld) -> None:
    limited = sso.service.container.sso.complete.ports.identity.policy.login_per_ip[0].limit
    for _ in range(limited):
        r = await sso.client.get("/api/v1/auth/sso/google/callback", params={"state": "nope", "code": "x"})
        assert error_of(r) == "invalid_state"
    r = await sso.client.get("/api/v1/auth/sso/google/callback", params={"state": "nope", "code": "x"})
    assert error_of(r) == "rate_limited"


async def test_the_password_of_an_sso_only_account_can_be_set_by_the_reset_flow(sso: SsoWorld) -> None:
    user = google_user(sso)
    await signed_in(sso, await round_trip(sso, "google", user))
    email = str(user.claims["email"])
    r = await sso.client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 401 and r.json()["code"] == "invalid_credentials"
    assert (await sso.client.post("/api/v1/auth/password/forgot", json={"email": email})).status_code == 202
    from tests.e2e.identity_helpers import last_link

    token = last_link(sso.service, email, "reset-password")
    r = await sso.client.post("/api/v1/auth/password/reset", json={"token": token, "new_password": PASSWORD})
    assert r.status_code == 204, r.text
    assert (await login(sso.client, email)).access


async def test_a_vouched_email_claims_an_unverified_account_and_its_password_dies(sso: SsoWorld) -> None:
    """Pre-account hijacking: an attacker registers the victim's address with a password of their
    own and never verifies it. The victim's Google sign-in takes the account over, the
    attacker's password does not come to life with the verification."""
    from tests.e2e.identity_helpers import register

    email = unique_address("victim")
    assert (await register(sso.client, email, PASSWORD)).status_code == 202
    victim = google_user(sso, email=email)
    session = await signed_in(sso, await round_trip(sso, "google", victim))
    assert session["me"]["email"] == email and session["me"]["email_verified"] is True
    r = await sso.client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 401 and r.json()["code"] == "invalid_credentials", r.text
    assert await audit(sso, "sso.unverified_account_claimed")
