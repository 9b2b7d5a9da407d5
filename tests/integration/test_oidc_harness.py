"""The SSO test harness itself (tests/oidc_harness.py): the real oidc-provider answers discovery and
JWKS per issuer, runs the code flow with PKCE through drive_login, releases each profile's claims,
rotates keys, and each tamper mode yields exactly the tampered id_token it promises."""

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from tests.oidc_harness import (
    AZURE_TENANT,
    OTHER_AZURE_TENANT,
    OidcClient,
    OidcLoginError,
    OidcProvider,
    OidcProviderUnavailable,
    OidcUser,
    authorization_request,
    drive_login,
    drive_login_async,
    ensure_node_modules,
    start_oidc_provider,
    token_request,
)

CALLBACK = "http://127.0.0.1:9/api/v1/auth/sso/{provider}/callback"


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def jwks(provider: OidcProvider, discovery: dict[str, Any]) -> dict[str, Any]:
    response = httpx.get(discovery["jwks_uri"])
    response.raise_for_status()
    keys: dict[str, Any] = response.json()
    return keys


def verify(
    provider: OidcProvider,
    discovery: dict[str, Any],
    id_token: str,
    *,
    audience: str | None = None,
    issuer: str | None = None,
) -> dict[str, Any]:
    """Signature check against the issuer's published JWKS; aud, iss and exp are checked only when
    audience and issuer are given (the tamper tests look at the raw claims)."""
    kid = jwt.get_unverified_header(id_token)["kid"]
    published = {key["kid"]: key for key in jwks(provider, discovery)["keys"]}
    if kid not in published:
        raise LookupError(f"kid {kid} is not in the JWKS")
    strict = audience is not None and issuer is not None
    claims: dict[str, Any] = jwt.decode(
        id_token,
        jwt.PyJWK(published[kid]),
        algorithms=["RS256"],
        audience=audience,
        issuer=issuer,
        options={"verify_aud": strict, "verify_exp": strict, "verify_iss": strict},
    )
    return claims


def sign_in(
    provider: OidcProvider,
    browser: httpx.Client,
    profile: str,
    client: OidcClient,
    user: OidcUser,
    tenant: str = AZURE_TENANT,
) -> tuple[dict[str, Any], dict[str, str], dict[str, Any], Any]:
    """The whole flow; returns (discovery, callback query, token response, authorization request)."""
    discovery = provider.discovery(profile, tenant)
    request = authorization_request(discovery, client)
    callback = drive_login(browser, request.url, login=user.login, password=user.password)
    assert callback.startswith(client.redirect_uris[0] + "?")
    params = query(callback)
    assert params["state"] == request.state
    response = token_request(discovery, client, params["code"], request.code_verifier)(browser)
    assert response.status_code == 200, response.text
    return discovery, params, response.json(), request


@pytest.fixture
def google(oidc_provider: OidcProvider) -> Iterator[OidcClient]:
    yield oidc_provider.add_client("google", [CALLBACK.format(provider="google")])
    oidc_provider.reset("google")


def test_each_profile_is_its_own_issuer_with_its_own_discovery_and_keys(oidc_provider: OidcProvider) -> None:
    seen_kids: set[str] = set()
    for profile in ("google", "oidc", "azure"):
        discovery = oidc_provider.discovery(profile)
        assert discovery["issuer"] == oidc_provider.issuer(profile)
        assert discovery["code_challenge_methods_supported"] == ["S256"]
        assert {"client_secret_basic", "client_secret_post"} <= set(
            discovery["token_endpoint_auth_methods_supported"]
        )
        kids = {key["kid"] for key in jwks(oidc_provider, discovery)["keys"]}
        assert kids and not kids & seen_kids
        seen_kids |= kids
    assert oidc_provider.discovery("google")["authorization_response_iss_parameter_supported"] is True
    assert "authorization_response_iss_parameter_supported" not in oidc_provider.discovery("azure")


def test_azure_discovery_follows_entra_multi_tenant_form(oidc_provider: OidcProvider) -> None:
    authority = oidc_provider.azure_authority
    for meta in ("common", "organizations"):
        assert oidc_provider.discovery("azure", meta)["issuer"] == f"{authority}/{{tenantid}}/v2.0"
    for tenant in (AZURE_TENANT, OTHER_AZURE_TENANT):
        assert oidc_provider.discovery("azure", tenant)["issuer"] == f"{authority}/{tenant}/v2.0"


def test_code_flow_with_pkce_nonce_state_and_iss(
    oidc_provider: OidcProvider, browser: httpx.Client, google: OidcClient
) -> None:
    user = oidc_provider.add_user("google", email="ana@example.test", email_verified=True, name="Ana")
    discovery, params, tokens, request = sign_in(oidc_provider, browser, "google", google, user)

    assert params["iss"] == oidc_provider.issuer("google")  # RFC 9207
    claims = verify(
        oidc_provider,
        discovery,
        tokens["id_token"],
        audience=google.client_id,
        issuer=oidc_provider.issuer("google"),
    )
    assert claims["iss"] == oidc_provider.issuer("google")
    assert claims["aud"] == google.client_id
    assert claims["nonce"] == request.nonce
    assert (claims["sub"], claims["email"], claims["email_verified"]) == (user.sub, "ana@example.test", True)
    assert "amr" not in claims

    # The code is single use, as at any real provider.
    again = token_request(discovery, google, params["code"], request.code_verifier)(browser)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_every_flow_signs_in_afresh_even_with_a_provider_session(
    oidc_provider: OidcProvider, browser: httpx.Client, google: OidcClient
) -> None:
    first = oidc_provider.add_user("google", email="first@example.test", email_verified=True)
    second = oidc_provider.add_user("google", email="second@example.test", email_verified=False)
    _, _, tokens, _ = sign_in(oidc_provider, browser, "google", google, first)
    _, _, again, _ = sign_in(oidc_provider, browser, "google", google, second)  # same cookie jar
    assert jwt.decode(tokens["id_token"], options={"verify_signature": False})["sub"] == first.sub
    assert jwt.decode(again["id_token"], options={"verify_signature": False})["sub"] == second.sub


async def test_async_driver_and_client_secret_post(oidc_provider: OidcProvider) -> None:
    client = oidc_provider.add_client(
        "oidc", [CALLBACK.format(provider="oidc")], auth_method="client_secret_post"
    )
    user = oidc_provider.add_user("oidc", email="bo@example.test", email_verified=False, amr=["pwd", "mfa"])
    discovery = oidc_provider.discovery("oidc")
    request = authorization_request(discovery, client)
    async with httpx.AsyncClient(timeout=10) as browser:
        callback = await drive_login_async(browser, request.url, login=user.login, password=user.password)
    params = query(callback)
    with httpx.Client(timeout=10) as http:
        response = token_request(discovery, client, params["code"], request.code_verifier)(http)
    assert response.status_code == 200, response.text
    claims = verify(oidc_provider, discovery, response.json()["id_token"])
    assert claims["email_verified"] is False
    assert claims["amr"] == ["pwd", "mfa"]


def test_pkce_is_enforced(oidc_provider: OidcProvider, browser: httpx.Client, google: OidcClient) -> None:
    user = oidc_provider.add_user("google", email="pk@example.test", email_verified=True)
    discovery = oidc_provider.discovery("google")
    request = authorization_request(discovery, google)
    params = query(drive_login(browser, request.url, login=user.login, password=user.password))
    wrong = token_request(discovery, google, params["code"], "x" * 64)(browser)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"

    without = authorization_request(discovery, google, pkce=False)
    refused = query(drive_login(browser, without.url, login=user.login, password=user.password))
    assert refused["error"] == "invalid_request" and "PKCE" in refused["error_description"]


def test_an_unregistered_redirect_uri_is_refused_at_the_provider(
    oidc_provider: OidcProvider, browser: httpx.Client, google: OidcClient
) -> None:
    user = oidc_provider.add_user("google", email="ru@example.test", email_verified=True)
    discovery = oidc_provider.discovery("google")
    request = authorization_request(discovery, google, redirect_uri="http://127.0.0.1:9/elsewhere")
    with pytest.raises(OidcLoginError, match="redirect_uri"):
        drive_login(browser, request.url, login=user.login, password=user.password)


def test_wrong_secret_wrong_password_and_denied_consent(
    oidc_provider: OidcProvider, browser: httpx.Client, google: OidcClient
) -> None:
    user = oidc_provider.add_user("google", email="cy@example.test", email_verified=True)
    discovery = oidc_provider.discovery("google")
    with pytest.raises(OidcLoginError, match="Invalid login or password"):
        drive_login(browser, authorization_request(discovery, google).url, login=user.login, password="nope")

    request = authorization_request(discovery, google)
    params = query(drive_login(browser, request.url, login=user.login, password=user.password))
    forged = OidcClient(
        "google", google.client_id, "not-the-secret", google.redirect_uris, "client_secret_basic"
    )
    response = token_request(discovery, forged, params["code"], request.code_verifier)(browser)
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"

    with httpx.Client(timeout=10) as fresh:
        denied = drive_login(
            fresh,
            authorization_request(discovery, google).url,
            login=user.login,
            password=user.password,
            consent=False,
        )
    assert query(denied)["error"] == "access_denied"


@pytest.mark.parametrize("with_edov", [True, False])
def test_azure_claims_and_per_tenant_issuer(oidc_provider: OidcProvider, with_edov: bool) -> None:
    client = oidc_provider.add_client("azure", [CALLBACK.format(provider="azure")])
    extra = {"xms_edov": True} if with_edov else {}
    user = oidc_provider.add_user(
        "azure",
        email="dee@contoso.test",
        preferred_username="dee@contoso.test",
        tid=OTHER_AZURE_TENANT,
        oid="0b6c6bb3-4a39-4ef6-9b2b-4f7a7d4c0d11",
        **extra,
    )
    with httpx.Client(timeout=10) as browser:
        discovery, params, tokens, request = sign_in(
            oidc_provider, browser, "azure", client, user, tenant="common"
        )
    assert "iss" not in params  # Entra ID sends no RFC 9207 iss
    claims = verify(oidc_provider, discovery, tokens["id_token"])
    assert claims["iss"] == oidc_provider.azure_issuer(OTHER_AZURE_TENANT)  # the real tid, not {tenantid}
    assert claims["tid"] == OTHER_AZURE_TENANT
    assert claims["oid"] == "0b6c6bb3-4a39-4ef6-9b2b-4f7a7d4c0d11"
    assert claims["email"] == claims["preferred_username"] == "dee@contoso.test"
    assert "email_verified" not in claims
    assert claims.get("xms_edov") is (True if with_edov else None)
    assert claims["nonce"] == request.nonce and claims["aud"] == client.client_id


def test_azure_tenant_authority_refuses_a_user_of_another_tenant(oidc_provider: OidcProvider) -> None:
    client = oidc_provider.add_client("azure", [CALLBACK.format(provider="azure")])
    user = oidc_provider.add_user("azure", email="eve@fabrikam.test", tid=OTHER_AZURE_TENANT)
    discovery = oidc_provider.discovery("azure", AZURE_TENANT)
    with httpx.Client(timeout=10) as browser, pytest.raises(OidcLoginError, match="AADSTS50020"):
        drive_login(
            browser, authorization_request(discovery, client).url, login=user.login, password=user.password
        )


@pytest.mark.parametrize("keep_old", [False, True])
def test_key_rotation_changes_the_kid(
    oidc_provider: OidcProvider, browser: httpx.Client, google: OidcClient, keep_old: bool
) -> None:
    user = oidc_provider.add_user("google", email=f"rot{keep_old}@example.test", email_verified=True)
    discovery, _, before, _ = sign_in(oidc_provider, browser, "google", google, user)
    old_kid = jwt.get_unverified_header(before["id_token"])["kid"]

    rotated = oidc_provider.rotate_keys("google", keep_old=keep_old)
    assert rotated["previous_kid"] == old_kid and rotated["signing_kid"] != old_kid
    published = {key["kid"] for key in jwks(oidc_provider, discovery)["keys"]}
    assert rotated["signing_kid"] in published
    assert (old_kid in published) is keep_old

    _, _, after, _ = sign_in(oidc_provider, browser, "google", google, user)
    assert jwt.get_unverified_header(after["id_token"])["kid"] == rotated["signing_kid"]
    assert verify(oidc_provider, discovery, after["id_token"])["sub"] == user.sub


TAMPERED = {
    "aud": lambda c, p, client: c["aud"] == "another-client" and c["aud"] != client.client_id,
    "nonce": lambda c, p, client: c["nonce"].startswith("foreign-"),
    "expired": lambda c, p, client: c["exp"] < c["iat"] + 7200 and c["exp"] < __import__("time").time(),
    "issuer": lambda c, p, client: c["iss"] == p.issuer("oidc"),
}


@pytest.mark.parametrize("mode", sorted(TAMPERED))
def test_each_tamper_mode_yields_a_validly_signed_tampered_id_token(
    oidc_provider: OidcProvider, browser: httpx.Client, google: OidcClient, mode: str
) -> None:
    user = oidc_provider.add_user("google", email=f"t-{mode}@example.test", email_verified=True)
    oidc_provider.tamper_next_id_token("google", mode)
    discovery, _, tokens, request = sign_in(oidc_provider, browser, "google", google, user)
    claims = verify(oidc_provider, discovery, tokens["id_token"])  # the signature is still good
    assert TAMPERED[mode](claims, oidc_provider, google), claims
    assert claims["sub"] == user.sub
    if mode != "nonce":
        assert claims["nonce"] == request.nonce

    # One shot: the next sign-in is clean and passes every check.
    _, _, clean, request = sign_in(oidc_provider, browser, "google", google, user)
    checked = verify(
        oidc_provider,
        discovery,
        clean["id_token"],
        audience=google.client_id,
        issuer=oidc_provider.issuer("google"),
    )
    assert (checked["aud"], checked["iss"], checked["nonce"]) == (
        google.client_id,
        oidc_provider.issuer("google"),
        request.nonce,
    )


def test_tamper_with_a_key_the_issuer_never_published(
    oidc_provider: OidcProvider, browser: httpx.Client, google: OidcClient
) -> None:
    user = oidc_provider.add_user("google", email="fk@example.test", email_verified=True)
    oidc_provider.tamper_next_id_token("google", "foreign_key")
    discovery, _, tokens, _ = sign_in(oidc_provider, browser, "google", google, user)
    with pytest.raises(LookupError, match="not in the JWKS"):
        verify(oidc_provider, discovery, tokens["id_token"])
    assert jwt.decode(tokens["id_token"], options={"verify_signature": False})["sub"] == user.sub


def test_tamper_claims_and_azure_issuer_mix_up(clean_oidc_provider: OidcProvider) -> None:
    oidc_provider = clean_oidc_provider
    client = oidc_provider.add_client("azure", [CALLBACK.format(provider="azure")])
    user = oidc_provider.add_user("azure", email="mx@contoso.test")
    oidc_provider.tamper_next_id_token("azure", "claims", {"tid": OTHER_AZURE_TENANT})
    with httpx.Client(timeout=10) as browser:
        discovery, _, tokens, _ = sign_in(oidc_provider, browser, "azure", client, user, tenant="common")
    claims = verify(oidc_provider, discovery, tokens["id_token"])
    # iss names the real tenant while the tid claim was changed: a mismatch Bulwark must refuse.
    assert claims["iss"] == oidc_provider.azure_issuer(AZURE_TENANT) and claims["tid"] == OTHER_AZURE_TENANT


def test_tampered_authorization_response_iss(
    oidc_provider: OidcProvider, browser: httpx.Client, google: OidcClient
) -> None:
    user = oidc_provider.add_user("google", email="ai@example.test", email_verified=True)
    oidc_provider.tamper_next_authorization_iss("google")
    discovery = oidc_provider.discovery("google")
    params = query(
        drive_login(
            browser, authorization_request(discovery, google).url, login=user.login, password=user.password
        )
    )
    assert params["iss"] == oidc_provider.issuer("oidc")
    params = query(
        drive_login(
            browser, authorization_request(discovery, google).url, login=user.login, password=user.password
        )
    )
    assert params["iss"] == oidc_provider.issuer("google")


def test_without_node_the_harness_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(OidcProviderUnavailable, match="node is not installed"):
        ensure_node_modules()


def test_the_server_exits_when_its_parent_goes(oidc_provider: OidcProvider) -> None:
    other = start_oidc_provider()
    try:
        assert other.base_url != oidc_provider.base_url
        assert other.process.stdin is not None
        other.process.stdin.close()  # what the kernel does when pytest is killed
        assert other.process.wait(timeout=10) == 0
    finally:
        other.stop()


def test_control_endpoints_refuse_nonsense(oidc_provider: OidcProvider) -> None:
    control = f"{oidc_provider.base_url}/_control"
    assert httpx.post(f"{control}/google/tamper", content=b"{not json").status_code == 400
    assert httpx.post(f"{control}/google/tamper", json={"mode": "everything"}).status_code == 400
    assert httpx.post(f"{control}/nowhere/rotate", json={}).status_code == 404
    assert httpx.post(f"{control}/google/clients", json={"client_id": "x"}).status_code == 400
