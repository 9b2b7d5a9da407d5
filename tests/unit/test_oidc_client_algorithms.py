"""Algorithm confusion against the authlib OIDC adapter, which the real provider cannot be made
to commit: an id_token MACed with the client secret (HS256), or unsigned (`alg: none`), must
not pass however right its claims. The provider here is httpx's MockTransport answering the
discovery, JWKS and token endpoints; an RS256 token with the same claims passes (the control)."""

import base64
import json
import time
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from adapters.oidc.authlib_client import AuthlibOidcClient, OidcProviderConfig
from application.ports.oidc import OidcRefused

ISSUER = "https://idp.test"
CLIENT_ID, SECRET, NONCE = "client-1", "a-client-secret-of-decent-length-123", "n-1"
SIGNING = RSAKey.generate_key(2048, {"kid": "k1", "alg": "RS256", "use": "sig"})


def claims() -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "sub": "s-1", "aud": CLIENT_ID, "iat": now, "exp": now + 300, "nonce": NONCE}


def unsigned(payload: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'kid': 'k1'})}.{part(payload)}."


def provider(id_token: str, algs: list[str]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": ISSUER,
                    "authorization_endpoint": f"{ISSUER}/auth",
                    "token_endpoint": f"{ISSUER}/token",
                    "jwks_uri": f"{ISSUER}/jwks",
                    "id_token_signing_alg_values_supported": algs,
                },
            )
        if path == "/jwks":
            return httpx.Response(200, json={"keys": [SIGNING.as_dict(private=False)]})
        if path == "/token":
            return httpx.Response(
                200, json={"access_token": "at", "token_type": "Bearer", "id_token": id_token}
            )
        return httpx.Response(404)

    return httpx.MockTransport(answer)


async def complete(id_token: str, algs: list[str]) -> object:
    client = AuthlibOidcClient(
        OidcProviderConfig(
            name="oidc",
            display_name="Test",
            discovery_url=f"{ISSUER}/.well-known/openid-configuration",
            issuer=ISSUER,
            client_id=CLIENT_ID,
            client_secret=SECRET,
            redirect_uri="https://bulwark.test/api/v1/auth/sso/oidc/callback",
        ),
        transport=provider(id_token, algs),
    )
    try:
        return await client.complete(code="c", code_verifier="v" * 43, nonce=NONCE, iss_parameter=None)
    finally:
        await client.close()


async def test_an_rs256_token_passes() -> None:
    token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims(), SIGNING)
    result = await complete(token, ["RS256"])
    assert getattr(result, "subject", None) == "s-1"


@pytest.mark.parametrize("algs", [["RS256"], ["HS256", "RS256"], ["none", "HS256"]])
async def test_a_token_maced_with_the_client_secret_is_refused(algs: list[str]) -> None:
    token = jwt.encode(
        {"alg": "HS256", "kid": "k1"}, claims(), OctKey.import_key(SECRET), algorithms=["HS256"]
    )
    with pytest.raises(OidcRefused):
        await complete(token, algs)


@pytest.mark.parametrize("algs", [["RS256"], ["none", "RS256"]])
async def test_an_unsigned_token_is_refused(algs: list[str]) -> None:
    with pytest.raises(OidcRefused):
        await complete(unsigned(claims()), algs)
