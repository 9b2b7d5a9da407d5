"""Egress credentials: the EdDSA token (signed by the vault, checked by the helper) and the
admission rule. Every refusal here is one a worker could try at the gateway."""

import time
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.egress.credential_tokens import (
    AUDIENCE,
    EdDsaEgressCredentialSigner,
    EdDsaEgressCredentialVerifier,
)
from adapters.tokens.service_token_issuer import EdDsaServiceTokens
from application.ports.egress_credentials import EgressCredentialRefused
from application.use_cases.egress_admission import AdmitEgress, EgressAdmitted, EgressRefused
from domain.egress_credentials import (
    EgressCredential,
    EgressRefusal,
    admission,
    check_lifetime,
    parse_proxy_username,
    proxy_username,
)
from tests.unit.fakes import FakeClock

ISSUER = "bulwark/vault"
KEY = Ed25519PrivateKey.generate()
USER = uuid.uuid4()
ADDRESS = "203.0.113.5"
NOW = datetime.now(UTC).replace(microsecond=0)


def signer(key: Ed25519PrivateKey = KEY, kid: str = "vk-1") -> EdDsaEgressCredentialSigner:
    return EdDsaEgressCredentialSigner({kid: key}, kid, issuer=ISSUER)


def verifier() -> EdDsaEgressCredentialVerifier:
    return EdDsaEgressCredentialVerifier({"vk-1": KEY.public_key()}, issuer=ISSUER)


def refusal(token: str) -> EgressRefusal:
    with pytest.raises(EgressCredentialRefused) as refused:
        verifier().verify(token)
    return refused.value.reason


def test_a_signed_credential_names_its_user_address_and_expiry() -> None:
    expires = NOW + timedelta(minutes=5)
    token = signer().sign(USER, ADDRESS, expires)
    assert verifier().verify(token) == EgressCredential(USER, ADDRESS, expires)


def claims(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(USER),
        "addr": ADDRESS,
        "iat": int(time.time()),
        "exp": int(time.time()) + 300,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def forge(payload: dict[str, object], key: object = KEY, **headers: object) -> str:
    return jwt.encode(
        payload, key, algorithm="EdDSA", headers={"typ": "egress+jwt", "kid": "vk-1", **headers}
    )  # type: ignore[arg-type]


def test_forgeries_are_refused() -> None:
    stranger = Ed25519PrivateKey.generate()
    assert refusal(signer(stranger).sign(USER, ADDRESS, NOW)) is EgressRefusal.FORGED  # another key
    assert refusal(signer(stranger, "vk-2").sign(USER, ADDRESS, NOW)) is EgressRefusal.FORGED  # unknown kid
    assert refusal(forge(claims(aud="bulwark-vault"))) is EgressRefusal.FORGED
    assert refusal(forge(claims(iss="someone-else"))) is EgressRefusal.FORGED
    assert refusal(forge(claims(addr="10.0.0.1x"))) is EgressRefusal.FORGED
    assert refusal(forge(claims(sub="not-a-uuid"))) is EgressRefusal.FORGED
    assert refusal(forge(claims(addr=None))) is EgressRefusal.FORGED  # a claim missing
    assert refusal(forge(claims(), typ="at+jwt")) is EgressRefusal.FORGED
    hmac = jwt.encode(claims(), "s" * 32, algorithm="HS256", headers={"typ": "egress+jwt", "kid": "vk-1"})
    assert refusal(hmac) is EgressRefusal.FORGED
    unsigned = jwt.encode(claims(), None, algorithm="none", headers={"typ": "egress+jwt", "kid": "vk-1"})
    assert refusal(unsigned) is EgressRefusal.FORGED
    good = signer().sign(USER, ADDRESS, NOW + timedelta(minutes=5))
    header, _, signature = good.split(".")
    other = signer().sign(uuid.uuid4(), ADDRESS, NOW + timedelta(minutes=5)).split(".")[1]
    assert refusal(f"{header}.{other}.{signature}") is EgressRefusal.FORGED  # payload swapped
    assert refusal("garbage") is EgressRefusal.MALFORMED
    assert refusal("") is EgressRefusal.MALFORMED
    assert refusal("a" * 5000) is EgressRefusal.MALFORMED


def test_a_vault_service_token_with_the_same_key_is_no_egress_credential() -> None:
    pem = KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    service = EdDsaServiceTokens({"vk-1": pem}, "vk-1", issuer=ISSUER, audience="bulwark-vault")
    issued = service.issue(USER, frozenset({"broker_credentials:use"}))
    assert refusal(issued.token) is EgressRefusal.FORGED


def test_the_admission_rule() -> None:
    credential = EgressCredential(USER, ADDRESS, NOW + timedelta(minutes=5))
    token = "header.claims.signature"
    username = proxy_username(USER, ADDRESS, token)
    assert admission(credential, username, token, ADDRESS, NOW) is None
    assert (
        admission(credential, username, token, ADDRESS, NOW + timedelta(minutes=5)) is EgressRefusal.EXPIRED
    )
    for wrong in (
        proxy_username(USER, "203.0.113.6", token),
        proxy_username(uuid.uuid4(), ADDRESS, token),
        proxy_username(USER, ADDRESS, "another.credential.altogether"),  # another credential's login
        f"{USER}@{ADDRESS}",  # the login anyone could spell
    ):
        assert admission(credential, wrong, token, ADDRESS, NOW) is EgressRefusal.MISMATCH, wrong
    assert admission(credential, username, token, None, NOW) is EgressRefusal.UNBOUND
    assert admission(credential, username, token, "203.0.113.6", NOW) is EgressRefusal.UNBOUND


def test_a_proxy_username_is_unguessable_without_its_credential() -> None:
    one, other = proxy_username(USER, ADDRESS, "credential-1"), proxy_username(USER, ADDRESS, "credential-2")
    assert one != other and one.startswith(f"{USER}@{ADDRESS}~") and len(one.split("~")[1]) == 22
    assert one == proxy_username(USER, ADDRESS, "credential-1")  # the same credential, the same login


def test_one_spelling_of_a_proxy_username() -> None:
    username = proxy_username(USER, ADDRESS, "token")
    fingerprint = username.split("~")[1]
    assert parse_proxy_username(username) == (USER, ADDRESS, fingerprint)
    for text in (
        f"{str(USER).upper()}@{ADDRESS}~{fingerprint}",
        f"{USER}@203.0.113.005~{fingerprint}",
        f"{USER}@::1~{fingerprint}",
        f"{USER.hex}@{ADDRESS}~{fingerprint}",
        f"{USER}",
        f"{USER}@{ADDRESS}",
        f"{USER}@{ADDRESS}~{fingerprint[:-1]}",
        f"{USER}@{ADDRESS}~{fingerprint[:-1]}+",
        f"{USER}@{ADDRESS}~{fingerprint}@x",
    ):
        assert parse_proxy_username(text) is None, text


def test_a_credential_lives_minutes() -> None:
    assert check_lifetime(timedelta(minutes=5)) == timedelta(minutes=5)
    for wrong in (timedelta(seconds=30), timedelta(hours=2)):
        with pytest.raises(ValueError):
            check_lifetime(wrong)


class Ledger:
    """In-memory EgressBindingLookup that counts its reads."""

    def __init__(self, bound: dict[uuid.UUID, str]) -> None:
        self.bound = bound
        self.reads = 0

    async def live_address(self, user_id: uuid.UUID) -> str | None:
        self.reads += 1
        return self.bound.get(user_id)


async def test_admission_reads_the_ledger_every_time_so_a_detach_stops_the_next_login() -> None:
    ledger = Ledger({USER: ADDRESS})
    admit = AdmitEgress(verifier(), ledger, FakeClock(NOW))
    token = signer().sign(USER, ADDRESS, NOW + timedelta(minutes=5))
    username = proxy_username(USER, ADDRESS, token)
    assert await admit(username, token) == EgressAdmitted(ADDRESS)
    assert await admit(username, token) == EgressAdmitted(ADDRESS)
    del ledger.bound[USER]
    assert await admit(username, token) == EgressRefused(EgressRefusal.UNBOUND)
    assert ledger.reads == 3


async def test_a_forged_expired_or_mismatched_login_costs_no_ledger_read() -> None:
    ledger = Ledger({USER: ADDRESS})
    clock = FakeClock(NOW)
    admit = AdmitEgress(verifier(), ledger, clock)
    token = signer().sign(USER, ADDRESS, NOW + timedelta(minutes=5))
    stranger = signer(Ed25519PrivateKey.generate()).sign(USER, ADDRESS, NOW + timedelta(minutes=5))
    assert await admit(proxy_username(USER, ADDRESS, stranger), stranger) == EgressRefused(
        EgressRefusal.FORGED
    )
    assert await admit("nobody", token) == EgressRefused(EgressRefusal.MALFORMED)
    assert await admit(proxy_username(USER, "203.0.113.9", token), token) == EgressRefused(
        EgressRefusal.MISMATCH
    )
    # Another credential's login (what an attacker racing a genuine check would need): refused.
    other = proxy_username(USER, ADDRESS, "x" + token)
    assert await admit(other, token) == EgressRefused(EgressRefusal.MISMATCH)
    clock.advance(minutes=5)
    assert await admit(proxy_username(USER, ADDRESS, token), token) == EgressRefused(EgressRefusal.EXPIRED)
    assert ledger.reads == 0
