"""The authlib OIDC adapter's checks of a provider's discovery document, on documents the real
provider cannot be made to serve: another issuer, endpoints that are not https. The provider here
is httpx's MockTransport answering discovery, JWKS and token endpoints."""

import logging
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from adapters.oidc.authlib_client import AuthlibOidcClient, OidcProviderConfig
from application.ports.oidc import AuthorizationRequest, OidcRefused, OidcUnavailable

ISSUER = "https://idp.test"
CLIENT_ID, NONCE = "client-1", "n-1"
SIGNING = RSAKey.generate_key(2048, {"kid": "k1", "alg": "RS256", "use": "sig"})


def discovery(issuer: str = ISSUER, **overrides: Any) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/auth",
        "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/jwks",
        "id_token_signing_alg_values_supported": ["RS256"],
        **overrides,
    }


def id_token(issuer: str = ISSUER, **extra: Any) -> str:
    now = int(time.time())
    claims = {"iss": issuer, "sub": "s-1", "aud": CLIENT_ID, "iat": now, "exp": now + 300, "nonce": NONCE}
    claims.update(extra)
    return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, SIGNING)


def idp(document: dict[str, Any], token: str | None = None) -> httpx.MockTransport:
    """Answers every endpoint by its path, wherever the document puts it."""

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json=document)
        if path.endswith("/jwks"):
            return httpx.Response(200, json={"keys": [SIGNING.as_dict(private=False)]})
        if path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "at", "token_type": "Bearer", "id_token": token})
        return httpx.Response(404)

    return httpx.MockTransport(answer)


def client_for(
    transport: httpx.MockTransport, issuer: str | None = ISSUER, base: str = ISSUER
) -> AuthlibOidcClient:
    return AuthlibOidcClient(
        OidcProviderConfig(
            name="oidc",
            display_name="Test",
            discovery_url=f"{base}/.well-known/openid-configuration",
            issuer=issuer,
            client_id=CLIENT_ID,
            client_secret="a-client-secret-of-decent-length-123",
            redirect_uri="https://bulwark.test/api/v1/auth/sso/oidc/callback",
        ),
        transport=transport,
    )


# -- the discovery document ----------------------------------------------------------------------


def recording(document: dict[str, Any], token: str | None = None) -> tuple[httpx.MockTransport, list[str]]:
    """idp(), remembering every URL asked for."""
    seen: list[str] = []
    inner = idp(document, token)

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return inner.handler(request)  # type: ignore[no-any-return]

    return httpx.MockTransport(answer), seen


async def both_ways(client: AuthlibOidcClient) -> list[Exception]:
    """The start and the callback of a flow; what each raised."""
    raised: list[Exception] = []
    try:
        await client.authorization_url(AuthorizationRequest("s", NONCE, "v" * 43))
    except (OidcUnavailable, OidcRefused) as error:
        raised.append(error)
    try:
        await client.complete(code="c", code_verifier="v" * 43, nonce=NONCE, iss_parameter=None)
    except (OidcUnavailable, OidcRefused) as error:
        raised.append(error)
    await client.close()
    return raised


@pytest.mark.parametrize("field", ["authorization_endpoint", "token_endpoint", "jwks_uri"])
@pytest.mark.parametrize("value", ["http://idp.test/x", "ftp://idp.test/x", "https:///x", "/relative"])
async def test_an_https_issuers_endpoints_must_be_https(
    field: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    transport, seen = recording(discovery(**{field: value}), id_token())
    with caplog.at_level(logging.ERROR, logger="bulwark.sso"):
        raised = await both_ways(client_for(transport))
    assert [type(e) for e in raised] == [OidcUnavailable, OidcUnavailable]
    assert f"{field} {value!r} is not https://host" in caplog.text
    # nothing went anywhere but the discovery URL: no code, no secret, no key fetch
    assert {urlsplit(url).path for url in seen} == {"/.well-known/openid-configuration"}


async def test_a_document_naming_another_issuer_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    transport, seen = recording(discovery(issuer="https://evil.test"), id_token())
    with caplog.at_level(logging.ERROR, logger="bulwark.sso"):
        raised = await both_ways(client_for(transport))
    assert [type(e) for e in raised] == [OidcUnavailable, OidcUnavailable]
    assert "issuer 'https://evil.test' is not 'https://idp.test'" in caplog.text
    assert {urlsplit(url).path for url in seen} == {"/.well-known/openid-configuration"}


async def test_an_issuer_known_only_from_its_document_must_be_https_too() -> None:
    """An Azure tenant given by name: the document's issuer is taken, but not an http one."""
    transport, _ = recording(discovery(issuer="http://idp.test"))
    raised = await both_ways(client_for(transport, issuer=None))
    assert [type(e) for e in raised] == [OidcUnavailable, OidcUnavailable]


async def test_endpoints_on_other_https_hosts_are_fine() -> None:
    """Google's keys are on www.googleapis.com, its issuer is accounts.google.com."""
    document = discovery(jwks_uri="https://keys.example/jwks", token_endpoint="https://api.example/token?v=2")
    transport, seen = recording(document, id_token())
    client = client_for(transport)
    try:
        url = await client.authorization_url(AuthorizationRequest("s", NONCE, "v" * 43))
        claims = await client.complete(code="c", code_verifier="v" * 43, nonce=NONCE, iss_parameter=None)
    finally:
        await client.close()
    assert url.startswith(f"{ISSUER}/auth?") and claims.subject == "s-1"
    assert "https://keys.example/jwks" in seen and "https://api.example/token?v=2" in seen


async def test_a_plain_http_issuer_may_use_plain_http_endpoints() -> None:
    """A provider on a developer's machine or in the tests (settings refuse http in production)."""
    local = "http://127.0.0.1:9000"
    transport, seen = recording(discovery(issuer=local), id_token(issuer=local))
    client = client_for(transport, issuer=local, base=local)
    try:
        claims = await client.complete(code="c", code_verifier="v" * 43, nonce=NONCE, iss_parameter=None)
    finally:
        await client.close()
    assert claims.issuer == local and f"{local}/token" in seen
