"""Linked identities from the account settings (link mode, unlinking, never the last way in) and
the second factor after an SSO sign-in, against the real provider on both backends."""

from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select

from adapters.storage.tables import audit_events
from tests.e2e.conftest import FRONTEND
from tests.e2e.identity_helpers import PASSWORD, bearer, login, login_response, register_verified
from tests.e2e.sso_helpers import (
    FLOW_COOKIE,
    MFA_COOKIE,
    NO_BODY,
    SsoWorld,
    assert_refused,
    at_provider,
    azure_user,
    error_of,
    google_user,
    refresh_cookie,
    round_trip,
    signed_in,
    sso,
    sso_config,
)
from tests.oidc_harness import OidcUser

__all__ = ["sso", "sso_config"]


async def identities(world: SsoWorld, access: str) -> list[dict[str, Any]]:
    r = await world.client.get("/api/v1/me/identities", headers=bearer(access))
    assert r.status_code == 200, r.text
    result: list[dict[str, Any]] = r.json()["identities"]
    return result


async def link(world: SsoWorld, access: str, provider: str, user: OidcUser, return_to: str | None = None):  # type: ignore[no-untyped-def]
    body = {"return_to": return_to} if return_to else {}
    r = await world.client.post(f"/api/v1/me/identities/{provider}/link", json=body, headers=bearer(access))
    assert r.status_code == 200, r.text
    assert r.headers["set-cookie"].startswith(f"{FLOW_COOKIE}=")
    callback = await at_provider(r.json()["authorization_url"], user)
    return await world.client.get(callback)


async def test_link_mode_links_whatever_the_email_and_the_identity_then_signs_in(sso: SsoWorld) -> None:
    email = await register_verified(sso.service)
    session = await login(sso.client, email)
    # another address, no xms_edov: a sign-in would never link it, the signed-in owner may
    other = azure_user(sso)
    r = await link(sso, session.access, "azure", other, "/settings/identities")
    assert r.status_code == 303 and r.headers["location"] == f"{FRONTEND}/settings/identities"
    assert refresh_cookie(r) is None  # link mode opens no session
    [linked] = await identities(sso, session.access)
    assert linked["provider"] == "azure" and linked["email"] == other.claims["email"]
    signed = await signed_in(sso, await round_trip(sso, "azure", other))
    assert signed["me"]["email"] == email


async def test_link_needs_a_recent_authentication(sso: SsoWorld) -> None:
    email = await register_verified(sso.service)
    session = await login(sso.client, email)
    sso.clock.advance(11 * 60)
    r = await sso.client.post("/api/v1/me/identities/google/link", json={}, headers=bearer(session.access))
    assert r.status_code == 401 and r.json()["code"] == "reauth_required", r.text
    r = await sso.client.post("/api/v1/me/identities/github/link", json={}, headers=bearer(session.access))
    assert r.status_code == 404 and r.json()["code"] == "provider_not_configured"


async def test_an_identity_linked_to_another_account_is_not_moved(sso: SsoWorld) -> None:
    owner = google_user(sso)
    await signed_in(sso, await round_trip(sso, "google", owner))
    email = await register_verified(sso.service)
    session = await login(sso.client, email)
    r = await link(sso, session.access, "google", owner)
    assert_refused(r, "identity_in_use")
    assert await identities(sso, session.access) == []


async def test_unlinking_the_last_sign_in_method_is_refused(sso: SsoWorld) -> None:
    user = google_user(sso)
    session = await signed_in(sso, await round_trip(sso, "google", user))
    [only] = await identities(sso, session["access"])
    r = await sso.client.delete(f"/api/v1/me/identities/{only['id']}", headers=bearer(session["access"]))
    assert r.status_code == 409 and r.json()["code"] == "last_sign_in_method", r.text
    assert len(await identities(sso, session["access"])) == 1

    # a second provider makes the first one removable, and then the second is the last
    second = sso.provider.add_user("oidc", email=str(user.claims["email"]), email_verified=True)
    r = await link(sso, session["access"], "oidc", second)
    assert error_of(r) is None
    r = await sso.client.delete(f"/api/v1/me/identities/{only['id']}", headers=bearer(session["access"]))
    assert r.status_code == 204, r.text
    [left] = await identities(sso, session["access"])
    assert left["provider"] == "oidc"
    r = await sso.client.delete(f"/api/v1/me/identities/{left['id']}", headers=bearer(session["access"]))
    assert r.status_code == 409 and r.json()["code"] == "last_sign_in_method"


async def test_a_password_account_may_unlink_its_only_identity(sso: SsoWorld) -> None:
    email = await register_verified(sso.service)
    session = await login(sso.client, email)
    await link(sso, session.access, "google", google_user(sso))
    [only] = await identities(sso, session.access)
    stranger = await login(sso.client, await register_verified(sso.service))
    r = await sso.client.delete(f"/api/v1/me/identities/{only['id']}", headers=stranger.headers)
    assert r.status_code == 404  # another user's identity reads as a missing one
    sso.clock.advance(11 * 60)
    r = await sso.client.delete(f"/api/v1/me/identities/{only['id']}", headers=bearer(session.access))
    assert r.status_code == 401 and r.json()["code"] == "reauth_required"
    fresh = await login(sso.client, email)
    r = await sso.client.delete(f"/api/v1/me/identities/{only['id']}", headers=fresh.headers)
    assert r.status_code == 204, r.text
    assert await identities(sso, fresh.access) == []


# -- the second factor after SSO -----------------------------------------------------------------


async def totp_account(world: SsoWorld) -> tuple[str, str]:
    """A password account with TOTP on: (email, secret)."""
    email = await register_verified(world.service)
    session = await login(world.client, email)
    r = await world.client.post(
        "/api/v1/me/2fa/totp/setup", json={"password": PASSWORD}, headers=session.headers
    )
    assert r.status_code == 200, r.text
    secret = r.json()["secret"]
    r = await world.client.post(
        "/api/v1/me/2fa/totp/confirm", json={"code": world.totp(secret)}, headers=session.headers
    )
    assert r.status_code == 200, r.text
    world.clock.advance(30)  # the next code is a new step
    return email, secret


async def mfa_step(world: SsoWorld, response: Any) -> str:
    """The callback asked for the second factor: no session yet, the SPA fetches the mfa_token."""
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{FRONTEND}/login/2fa"
    assert parse_qs(location.query)["return_to"] == ["/dashboard"]
    assert refresh_cookie(response) is None
    assert "mfa_token" not in response.headers["location"]
    r = await world.client.post("/api/v1/auth/sso/mfa", headers=NO_BODY)
    assert r.status_code == 200, r.text
    assert r.json()["mfa_required"] is True
    assert MFA_COOKIE in r.headers["set-cookie"] and "Max-Age=0" in r.headers["set-cookie"]
    return str(r.json()["mfa_token"])


async def test_totp_after_sso_is_the_same_mfa_token_step(sso: SsoWorld) -> None:
    email, secret = await totp_account(sso)
    user = google_user(sso, email=email, amr=["pwd", "mfa"])  # the provider's MFA is not trusted by default
    token = await mfa_step(sso, await round_trip(sso, "google", user))
    r = await sso.client.post("/api/v1/auth/login/2fa", json={"mfa_token": token, "code": "000000"})
    assert r.status_code == 401
    r = await sso.client.post("/api/v1/auth/login/2fa", json={"mfa_token": token, "code": sso.totp(secret)})
    assert r.status_code == 200, r.text
    assert r.json()["user"]["email"] == email
    r = await sso.client.post("/api/v1/auth/sso/mfa", headers=NO_BODY)
    assert r.status_code == 401  # handed over once


async def test_an_org_may_trust_the_providers_mfa(sso: SsoWorld) -> None:
    email, secret = await totp_account(sso)
    # two people at the provider with the same address (their own logins), one signed in with MFA
    with_mfa = google_user(sso, email=email, amr=["pwd", "mfa"], login=f"mfa-{email}")
    without_mfa = google_user(sso, email=email, amr=["pwd"], login=f"pwd-{email}")
    # its administrator turns the setting on (a full TOTP login first)
    r = await login_response(sso.client, email)
    r = await sso.client.post(
        "/api/v1/auth/login/2fa", json={"mfa_token": r.json()["mfa_token"], "code": sso.totp(secret)}
    )
    assert r.status_code == 200, r.text
    admin = bearer(r.json()["access_token"])
    org_id = (await sso.client.get("/api/v1/me", headers=admin)).json()["current_org"]["id"]
    r = await sso.client.patch(f"/api/v1/orgs/{org_id}", json={"trust_sso_mfa": True}, headers=admin)
    assert r.status_code == 200 and r.json()["trust_sso_mfa"] is True, r.text

    await signed_in(sso, await round_trip(sso, "google", with_mfa))
    async with sso.service.container.engine.connect() as conn:
        rows = await conn.execute(select(audit_events).where(audit_events.c.action == "login.success"))
        details = [row.details for row in rows]
    assert details[-1] == {"method": "sso:google", "mfa": "provider_amr"}
    await mfa_step(sso, await round_trip(sso, "google", without_mfa))  # no `mfa` in amr: our own factor

    r = await sso.client.patch(f"/api/v1/orgs/{org_id}", json={"trust_sso_mfa": False}, headers=admin)
    assert r.status_code == 200 and r.json()["trust_sso_mfa"] is False
    await mfa_step(sso, await round_trip(sso, "google", with_mfa))

    # Trusted again, but the user also belongs to an org that does not trust the provider: the
    # session could switch there without a factor, so our own factor is asked for.
    r = await sso.client.patch(f"/api/v1/orgs/{org_id}", json={"trust_sso_mfa": True}, headers=admin)
    assert r.status_code == 200, r.text
    await signed_in(sso, await round_trip(sso, "google", with_mfa))
    r = await sso.client.post("/api/v1/orgs", json={"name": "Corporate"}, headers=admin)
    assert r.status_code == 201, r.text
    await mfa_step(sso, await round_trip(sso, "google", with_mfa))


async def test_closing_the_account_erases_its_linked_identities(sso: SsoWorld) -> None:
    email = await register_verified(sso.service)
    session = await login(sso.client, email)
    user = google_user(sso)
    await link(sso, session.access, "google", user)
    assert len(await identities(sso, session.access)) == 1
    r = await sso.client.request("DELETE", "/api/v1/me", json={"password": PASSWORD}, headers=session.headers)
    assert r.status_code in (200, 202, 204), r.text
    from adapters.storage.tables import sso_identities

    async with sso.service.container.engine.connect() as conn:
        assert (await conn.execute(select(sso_identities))).all() == []
    # the provider's identity names nobody now: a sign-in makes a new account, not the closed one
    fresh = await signed_in(sso, await round_trip(sso, "google", user))
    assert fresh["me"]["email"] == user.claims["email"] != email
