"""Forged and tampered access tokens against GET /api/v1/me, and the JWKS that verifies the real
ones. Every forgery targets a live session, so a 401 can only come from the token check; a
token signed the honest way with the same inputs gets 200 (the control)."""

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from entrypoints.settings import Settings
from tests.e2e.conftest import Service
from tests.e2e.identity_helpers import (
    FAST_ARGON2,
    assert_invalid_token,
    login,
    me,
    register_verified,
    service_with,
)


@pytest.fixture
async def service(service_settings: Settings, redis_namespace: str) -> AsyncIterator[Service]:
    """The shared service fixture with argon2 at OWASP's floor, to keep these many logins quick."""
    async with service_with(service_settings, redis_namespace, **FAST_ARGON2) as svc:
        yield svc


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(obj: dict[str, Any]) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


class Forge:
    """A live session's real claims and the service's real key, to build tokens from."""

    def __init__(self, service: Service, access_token: str) -> None:
        signing_key = service.container.key_provider.signing_keys()[0]
        key = load_pem_private_key(signing_key.private_pem, password=None)
        assert isinstance(key, Ed25519PrivateKey)
        self.key = key
        self.kid = signing_key.kid
        self.public_pem = signing_key.public_pem
        self.claims: dict[str, Any] = jwt.decode(access_token, options={"verify_signature": False})
        self.header: dict[str, Any] = {"alg": "EdDSA", "typ": "at+jwt", "kid": self.kid}

    def sign(
        self, claims: dict[str, Any] | None = None, header: dict[str, Any] | None = None, key: Any = None
    ) -> str:
        headers = {k: v for k, v in (header or self.header).items() if k != "alg"}
        return jwt.encode(
            claims or self.claims, key or self.key, algorithm="EdDSA", headers=headers, sort_headers=False
        )


@pytest.fixture
async def forge(service: Service) -> Forge:
    session = await login(service.client, await register_verified(service))
    return Forge(service, session.access)


def alg_none(f: Forge) -> str:
    return f"{segment({**f.header, 'alg': 'none'})}.{segment(f.claims)}."


def hs256_with_public_key(f: Forge) -> str:
    # The classic confusion: the verifier's public key used as an HMAC secret.
    signing_input = f"{segment({**f.header, 'alg': 'HS256'})}.{segment(f.claims)}"
    mac = hmac.new(f.public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def stripped_signature(f: Forge) -> str:
    head, payload, _ = f.sign().split(".")
    return f"{head}.{payload}"


def empty_signature(f: Forge) -> str:
    head, payload, _ = f.sign().split(".")
    return f"{head}.{payload}."


def unknown_kid(f: Forge) -> str:
    return f.sign(header={**f.header, "kid": "retired-or-made-up"})


def injected_kid(f: Forge) -> str:
    return f.sign(header={**f.header, "kid": "../../data/keys.json"})


def attacker_key_with_own_kid(f: Forge) -> str:
    return f.sign(header={**f.header, "kid": "attacker"}, key=Ed25519PrivateKey.generate())


def attacker_key_under_our_kid(f: Forge) -> str:
    return f.sign(key=Ed25519PrivateKey.generate())


def embedded_jwk(f: Forge) -> str:
    attacker = Ed25519PrivateKey.generate()
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(attacker.public_key()))
    return f.sign(header={**f.header, "jwk": jwk}, key=attacker)


def jku_header(f: Forge) -> str:
    return f.sign(header={**f.header, "jku": "https://attacker.example/jwks.json"})


def wrong_typ(f: Forge) -> str:
    return f.sign(header={**f.header, "typ": "JWT"})


def expired(f: Forge) -> str:
    now = int(time.time())
    return f.sign({**f.claims, "auth_time": now - 3600, "iat": now - 1000, "exp": now - 100})


def tampered_payload(f: Forge) -> str:
    head, _, signature = f.sign().split(".")
    return f"{head}.{segment({**f.claims, 'prole': 'platform_administrator'})}.{signature}"


def wrong_audience(f: Forge) -> str:
    return f.sign({**f.claims, "aud": "another-api"})


def wrong_issuer(f: Forge) -> str:
    return f.sign({**f.claims, "iss": "someone-else"})


ATTACKS: list[Callable[[Forge], str]] = [
    alg_none,
    hs256_with_public_key,
    stripped_signature,
    empty_signature,
    unknown_kid,
    injected_kid,
    attacker_key_with_own_kid,
    attacker_key_under_our_kid,
    embedded_jwk,
    jku_header,
    wrong_typ,
    expired,
    tampered_payload,
    wrong_audience,
    wrong_issuer,
]


async def test_a_token_signed_with_the_service_key_and_real_claims_is_accepted(
    service: Service, forge: Forge
) -> None:
    """The control: the forgeries below differ from this token only in the attacked detail."""
    fresh = forge.sign({**forge.claims, "jti": "re-signed"})
    r = await me(service.client, fresh)
    assert r.status_code == 200, r.text


async def test_forged_and_tampered_tokens_are_refused(service: Service, forge: Forge) -> None:
    for attack in ATTACKS:
        r = await me(service.client, attack(forge))
        assert r.status_code == 401, (attack.__name__, r.text)
        assert r.json()["code"] == "invalid_token", (attack.__name__, r.text)


async def test_a_non_bearer_authorization_header_is_refused(service: Service, forge: Forge) -> None:
    r = await service.client.get("/api/v1/me", headers={"authorization": f"Basic {forge.sign()}"})
    assert_invalid_token(r)


async def test_jwks_lists_the_public_key_and_verifies_issued_tokens(service: Service) -> None:
    session = await login(service.client, await register_verified(service))
    r = await service.client.get("/.well-known/jwks.json")
    assert r.status_code == 200, r.text
    jwks = r.json()
    kid = jwt.get_unverified_header(session.access)["kid"]
    [entry] = [k for k in jwks["keys"] if k["kid"] == kid]
    assert entry["kty"] == "OKP" and entry["crv"] == "Ed25519" and entry["alg"] == "EdDSA"
    assert not {"d", "p", "q"} & set(entry), "private key material in the JWKS"
    key = jwt.PyJWKSet.from_dict(jwks)[kid]
    settings = service.container.settings
    claims = jwt.decode(
        session.access,
        key.key,
        algorithms=["EdDSA"],
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    assert claims["sub"] == session.body["user"]["id"]
    assert jwt.get_unverified_header(session.access)["typ"] == "at+jwt"
    assert {"sid", "org", "prole", "auth_time", "iat", "exp", "jti"} <= set(claims)
