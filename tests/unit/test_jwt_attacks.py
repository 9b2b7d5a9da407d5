"""EdDSA access tokens: the round trip, and the classic JWT attacks, each refused.

Forged tokens are built by hand (not with PyJWT, which refuses most of them) so each test controls
every byte of header, payload and signature. Attacks that a signature check alone would stop are
also tried *validly signed with our own key*, so each pinned check is proven on its own."""

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from adapters.tokens import EdDsaJwtIssuer
from application.errors import NotAuthenticated
from application.ports.key_provider import KeyUnavailableError, SigningKey, WrappedKey
from application.ports.token_issuer import InvalidToken

ISSUER = "https://bulwark.test"
AUDIENCE = "bulwark-api"
START = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: object) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def make_key(kid: str) -> tuple[SigningKey, Ed25519PrivateKey]:
    private = Ed25519PrivateKey.generate()
    signing_key = SigningKey(
        kid=kid,
        private_pem=private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()),
        public_pem=private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
    )
    return signing_key, private


class FakeKeyProvider:
    """Only the signing-key part of KeyProvider; tests rotate by assigning `keys`."""

    def __init__(self, keys: list[SigningKey]) -> None:
        self.keys = keys

    def signing_keys(self) -> list[SigningKey]:
        return list(self.keys)

    def active_master_key_id(self) -> str:
        raise NotImplementedError

    async def wrap(self, data_key: bytes, context: bytes) -> WrappedKey:
        raise NotImplementedError

    async def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        raise NotImplementedError

    def pepper(self, version: str) -> bytes:
        raise NotImplementedError

    def active_pepper_version(self) -> str:
        raise NotImplementedError

    @property
    def generated(self) -> bool:
        return False


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Setup:
    def __init__(self, *, leeway: int = 0) -> None:
        self.signing_key, self.private = make_key("k1")
        self.provider = FakeKeyProvider([self.signing_key])
        self.clock = FakeClock(START)
        self.issuer = EdDsaJwtIssuer(
            self.provider,
            issuer=ISSUER,
            audience=AUDIENCE,
            ttl_seconds=900,
            clock=self.clock,
            leeway_seconds=leeway,
        )

    def header(self, **overrides: Any) -> dict[str, Any]:
        header: dict[str, Any] = {"alg": "EdDSA", "typ": "at+jwt", "kid": self.signing_key.kid}
        header.update(overrides)
        return {k: v for k, v in header.items() if v is not None}

    def payload(self, **overrides: Any) -> dict[str, Any]:
        now = int(self.clock.now.timestamp())
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": str(uuid.uuid4()),
            "sid": str(uuid.uuid4()),
            "org": str(uuid.uuid4()),
            "prole": "member",
            "auth_time": now,
            "iat": now,
            "exp": now + 900,
            "jti": "jti-1",
        }
        payload.update(overrides)
        return {k: v for k, v in payload.items() if v is not None}

    def forge(
        self,
        header: dict[str, Any] | None = None,
        payload: dict[str, Any] | None = None,
        key: Ed25519PrivateKey | None = None,
    ) -> str:
        """A compact JWS signed with `key` (our real key by default), whatever the header says."""
        signing_input = f"{b64url_json(header or self.header())}.{b64url_json(payload or self.payload())}"
        signature = (key or self.private).sign(signing_input.encode())
        return f"{signing_input}.{b64url(signature)}"

    def issue(self) -> str:
        return self.issuer.issue(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), "member", START).token


@pytest.fixture
def s() -> Setup:
    return Setup()


def refused(s: Setup, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        s.issuer.verify(token)
    return caught.value


# -- the happy path ------------------------------------------------------------------------


def test_issued_token_verifies_to_the_claims_it_was_issued_with(s: Setup) -> None:
    sub, sid, org = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    auth_time = START - timedelta(minutes=5)
    issued = s.issuer.issue(sub, sid, org, "admin", auth_time)

    claims = s.issuer.verify(issued.token)

    assert claims == issued.claims
    assert (claims.sub, claims.sid, claims.org, claims.prole) == (sub, sid, org, "admin")
    assert claims.auth_time == auth_time
    assert claims.iat == START
    assert claims.exp == START + timedelta(seconds=900)
    assert issued.expires_in == 900
    assert len(base64.urlsafe_b64decode(claims.jti + "==")) == 16  # 128 random bits
    header = json.loads(base64.urlsafe_b64decode(issued.token.split(".")[0] + "=="))
    assert header == {"alg": "EdDSA", "typ": "at+jwt", "kid": "k1"}
    payload = json.loads(base64.urlsafe_b64decode(issued.token.split(".")[1] + "=="))
    assert set(payload) == {"iss", "aud", "sub", "sid", "org", "prole", "auth_time", "iat", "exp", "jti"}
    assert (payload["iss"], payload["aud"]) == (ISSUER, AUDIENCE)


def test_each_token_gets_a_fresh_jti(s: Setup) -> None:
    jtis = {s.issuer.verify(s.issue()).jti for _ in range(20)}
    assert len(jtis) == 20


def test_hand_built_token_with_our_key_verifies(s: Setup) -> None:
    # The forging helper itself produces acceptable tokens, so the refusals below are meaningful.
    claims = s.issuer.verify(s.forge())
    assert claims.prole == "member"


def test_invalid_token_is_a_not_authenticated_error_with_its_own_code(s: Setup) -> None:
    error = refused(s, "garbage")
    assert isinstance(error, NotAuthenticated)
    assert error.code == "invalid_token"


# -- algorithm confusion -------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_unsigned_alg_none_token_is_refused(s: Setup, alg: str) -> None:
    unsigned = f"{b64url_json(s.header(alg=alg))}.{b64url_json(s.payload())}."
    refused(s, unsigned)
    # ...also with a dummy signature segment, so the empty-segment check is not what stops it.
    refused(s, unsigned + b64url(b"\x00" * 64))


def test_hs256_token_keyed_with_our_public_key_pem_is_refused(s: Setup) -> None:
    signing_input = f"{b64url_json(s.header(alg='HS256'))}.{b64url_json(s.payload())}"
    mac = hmac.new(s.signing_key.public_pem, signing_input.encode(), hashlib.sha256).digest()
    refused(s, f"{signing_input}.{b64url(mac)}")


def test_eddsa_token_whose_header_claims_another_algorithm_is_refused(s: Setup) -> None:
    # Validly Ed25519-signed, but labelled ES256: the alg pin, not the signature, must refuse it.
    refused(s, s.forge(header=s.header(alg="ES256")))


# -- signature stripping -------------------------------------------------------------------


def test_token_with_empty_signature_is_refused(s: Setup) -> None:
    header, payload, _ = s.issue().split(".")
    refused(s, f"{header}.{payload}.")


def test_token_with_signature_segment_removed_is_refused(s: Setup) -> None:
    header, payload, _ = s.issue().split(".")
    refused(s, f"{header}.{payload}")


def test_token_with_all_zero_signature_is_refused(s: Setup) -> None:
    header, payload, _ = s.issue().split(".")
    refused(s, f"{header}.{payload}.{b64url(bytes(64))}")


def test_signature_with_non_canonical_base64_is_refused(s: Setup) -> None:
    # A 64-byte signature leaves 4 unused bits in its last character; decoders ignore them, so
    # without a canonical-encoding check this altered string would verify (and be a new cache key).
    token = s.issue()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    twin = token[:-1] + alphabet[last ^ 0b0001]
    assert base64.urlsafe_b64decode(twin.split(".")[2] + "==") == base64.urlsafe_b64decode(
        token.split(".")[2] + "=="
    )
    refused(s, twin)
    assert s.issuer.verify(token)  # the original still verifies


def test_padded_variant_of_a_valid_token_is_refused(s: Setup) -> None:
    # PyJWT accepts '=' padding; we insist on one string per token (it is the cache key).
    token = s.issue()
    assert len(token.split(".")[2]) % 4 == 2  # a 64-byte signature encodes to 86 characters
    refused(s, token + "==")
    assert s.issuer.verify(token)


# -- key selection -------------------------------------------------------------------------


def test_token_with_unknown_kid_is_refused(s: Setup) -> None:
    refused(s, s.forge(header=s.header(kid="k9")))


def test_token_without_kid_is_refused(s: Setup) -> None:
    refused(s, s.forge(header=s.header(kid=None)))


@pytest.mark.parametrize(
    "kid",
    ["../../dev/null", "/dev/null", "k1/../k1", "k1' OR '1'='1", "k1\x00", "", "K1", " k1"],
)
def test_injected_kid_is_refused(s: Setup, kid: str) -> None:
    attacker = Ed25519PrivateKey.generate()
    refused(s, s.forge(header=s.header(kid=kid), key=attacker))
    # Even validly signed by us, a kid that is not exactly a known one selects nothing.
    refused(s, s.forge(header=s.header(kid=kid)))


@pytest.mark.parametrize("kid", [1, None, ["k1"], {"kid": "k1"}])
def test_non_string_kid_is_refused(s: Setup, kid: object) -> None:
    header = s.header()
    header["kid"] = kid
    refused(s, s.forge(header=header))


def test_token_signed_by_an_unknown_ed25519_key_under_a_known_kid_is_refused(s: Setup) -> None:
    attacker = Ed25519PrivateKey.generate()
    refused(s, s.forge(key=attacker))


def _attacker_jwk(private: Ed25519PrivateKey, kid: str) -> dict[str, str]:
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw), "kid": kid}


@pytest.mark.parametrize(
    "extra",
    [
        {"jku": "https://attacker.example/jwks.json"},
        {"x5u": "https://attacker.example/cert.pem"},
        {"jwk": "ATTACKER_JWK"},
        {"x5c": ["MIIBattackercert"]},
        {"crit": ["exp"]},
        {"b64": False},
        {"cty": "JWT"},
    ],
    ids=lambda extra: next(iter(extra)),
)
def test_token_with_key_selecting_or_processing_headers_is_refused(s: Setup, extra: dict[str, Any]) -> None:
    attacker = Ed25519PrivateKey.generate()
    if extra.get("jwk") == "ATTACKER_JWK":
        extra = {"jwk": _attacker_jwk(attacker, "k1")}
    # Signed by the attacker, with the key the header points at...
    refused(s, s.forge(header={**s.header(), **extra}, key=attacker))
    refused(s, s.forge(header={**s.header(kid="attacker"), **extra}, key=attacker))
    # ...and even signed by our own key: the header parameter alone is grounds for refusal.
    refused(s, s.forge(header={**s.header(), **extra}))


def test_kid_pointing_at_an_embedded_jwk_is_refused(s: Setup) -> None:
    attacker = Ed25519PrivateKey.generate()
    header = {**s.header(kid="embedded"), "jwk": _attacker_jwk(attacker, "embedded")}
    refused(s, s.forge(header=header, key=attacker))


# -- token type, issuer, audience ----------------------------------------------------------


@pytest.mark.parametrize("typ", ["JWT", "jwt", "AT+JWT", "application/at+jwt", "at+jwt ", None])
def test_token_with_wrong_or_missing_typ_is_refused(s: Setup, typ: str | None) -> None:
    refused(s, s.forge(header=s.header(typ=typ)))


@pytest.mark.parametrize("iss", ["https://evil.test", "https://bulwark.test/", "bulwark.test", ""])
def test_token_from_another_issuer_is_refused(s: Setup, iss: str) -> None:
    refused(s, s.forge(payload=s.payload(iss=iss)))


def test_token_with_non_string_issuer_is_refused(s: Setup) -> None:
    refused(s, s.forge(payload=s.payload(iss=[ISSUER])))


@pytest.mark.parametrize("aud", ["other-api", "bulwark-api-admin", "", ["other-api"]])
def test_token_for_another_audience_is_refused(s: Setup, aud: object) -> None:
    refused(s, s.forge(payload=s.payload(aud=aud)))


def test_token_for_several_audiences_including_ours_is_refused(s: Setup) -> None:
    # A token minted for many services must not be replayable against this one.
    refused(s, s.forge(payload=s.payload(aud=[AUDIENCE, "other-api"])))


# -- claims --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "claim", ["iss", "aud", "sub", "sid", "org", "prole", "auth_time", "iat", "exp", "jti"]
)
def test_token_missing_a_claim_is_refused(s: Setup, claim: str) -> None:
    payload = s.payload()
    del payload[claim]
    refused(s, s.forge(payload=payload))


@pytest.mark.parametrize("claim", ["sub", "sid", "org"])
@pytest.mark.parametrize(
    "value",
    [
        "admin",
        "",
        "12345678123456781234567812345678",  # UUID() accepts it; not the form we issue
        "{12345678-1234-5678-1234-567812345678}",
        "urn:uuid:12345678-1234-5678-1234-567812345678",
        "12345678-1234-5678-1234-56781234567G",
        42,
    ],
)
def test_identity_claims_must_be_canonical_uuids(s: Setup, claim: str, value: object) -> None:
    refused(s, s.forge(payload=s.payload(**{claim: value})))


@pytest.mark.parametrize("claim", ["prole", "jti"])
@pytest.mark.parametrize("value", ["", 1, ["owner"], None])
def test_string_claims_must_be_non_empty_strings(s: Setup, claim: str, value: object) -> None:
    payload = s.payload()
    payload[claim] = value
    refused(s, s.forge(payload=payload))


@pytest.mark.parametrize("claim", ["exp", "iat", "auth_time"])
def test_time_claims_must_be_integers(s: Setup, claim: str) -> None:
    payload = s.payload()
    for bad in (str(payload[claim]), float(payload[claim]) + 0.5, True):
        refused(s, s.forge(payload={**payload, claim: bad}))


def test_tampered_payload_with_the_original_signature_is_refused(s: Setup) -> None:
    token = s.issue()
    header, payload_segment, signature = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(payload_segment + "=="))
    for change in ({"prole": "owner"}, {"org": str(uuid.uuid4())}, {"exp": payload["exp"] + 86400}):
        refused(s, f"{header}.{b64url_json({**payload, **change})}.{signature}")
    assert s.issuer.verify(token)


def test_tampered_header_with_the_original_signature_is_refused(s: Setup) -> None:
    s.provider.keys = [s.signing_key, make_key("k2")[0]]
    token = s.issue()
    _, payload_segment, signature = token.split(".")
    refused(s, f"{b64url_json(s.header(kid='k2'))}.{payload_segment}.{signature}")


def test_oversized_token_is_refused_before_parsing(s: Setup) -> None:
    huge = s.forge(payload=s.payload(pad="x" * 5000))
    refused(s, huge)


@pytest.mark.parametrize("garbage", ["", ".", "..", "a.b.c", "a.b.c.d", "!!.??.**", "a b.c.d"])
def test_malformed_tokens_are_refused(s: Setup, garbage: str) -> None:
    refused(s, garbage)


# -- time ----------------------------------------------------------------------------------


def test_token_stops_verifying_at_exp(s: Setup) -> None:
    token = s.issue()
    s.clock.advance(899)
    assert s.issuer.verify(token)
    s.clock.advance(1)  # now == exp: RFC 7519 says "on or after" is expired
    refused(s, token)


def test_expired_token_is_refused_on_first_sight(s: Setup) -> None:
    token = s.issue()
    s.clock.advance(3600)
    assert "expired" in refused(s, token).detail


def test_leeway_tolerates_small_clock_skew_and_no_more() -> None:
    s = Setup(leeway=30)
    token = s.issue()
    s.clock.advance(900 + 29)
    assert s.issuer.verify(token)
    s.clock.advance(1)
    refused(s, token)


def test_token_issued_in_the_future_is_refused(s: Setup) -> None:
    later = int(START.timestamp()) + 120
    refused(s, s.forge(payload=s.payload(iat=later, auth_time=later, exp=later + 900)))


def test_token_whose_exp_precedes_iat_is_refused(s: Setup) -> None:
    now = int(START.timestamp())
    refused(s, s.forge(payload=s.payload(iat=now - 10, auth_time=now - 10, exp=now - 20)))


def test_token_authenticated_after_it_was_issued_is_refused(s: Setup) -> None:
    now = int(START.timestamp())
    refused(s, s.forge(payload=s.payload(auth_time=now + 5)))


def test_issuing_rejects_naive_datetimes_and_future_auth_time(s: Setup) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        s.issuer.issue(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), "member", START.replace(tzinfo=None))
    with pytest.raises(ValueError, match="future"):
        s.issuer.issue(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), "member", START + timedelta(seconds=5))


# -- cache ---------------------------------------------------------------------------------


class CountingDecoder:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def decode(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.inner.decode(*args, **kwargs)


def count_signature_checks(s: Setup) -> CountingDecoder:
    counter = CountingDecoder(s.issuer._jwt)
    s.issuer._jwt = counter  # type: ignore[assignment]
    return counter


def test_repeat_verifications_are_served_from_the_cache(s: Setup) -> None:
    counter = count_signature_checks(s)
    token = s.issue()
    first = s.issuer.verify(token)
    for _ in range(5):
        assert s.issuer.verify(token) == first
    assert counter.calls == 1


def test_cached_token_stops_verifying_after_exp(s: Setup) -> None:
    token = s.issue()
    assert s.issuer.verify(token)  # now cached
    s.clock.advance(900)
    refused(s, token)
    s.clock.advance(-900)  # and it was evicted, not just hidden: a clock step back re-verifies it
    assert s.issuer.verify(token)


def test_cache_is_keyed_by_the_exact_token_string(s: Setup) -> None:
    token = s.issue()
    assert s.issuer.verify(token)
    header, payload, _ = token.split(".")
    # Same header and payload as a cached, valid token, but not its signature.
    refused(s, f"{header}.{payload}.{b64url(bytes(64))}")
    refused(s, f"{header}.{payload}.{b64url(Ed25519PrivateKey.generate().sign(b'x'))}")


def test_failures_are_not_cached_as_successes(s: Setup) -> None:
    counter = count_signature_checks(s)
    forged = s.forge(key=Ed25519PrivateKey.generate())
    for _ in range(3):
        refused(s, forged)
    assert counter.calls == 3  # each attempt is checked afresh


def test_cache_is_bounded_and_evicts_least_recently_used() -> None:
    s = Setup()
    s.issuer = EdDsaJwtIssuer(
        s.provider, issuer=ISSUER, audience=AUDIENCE, clock=s.clock, max_cached_tokens=3
    )
    counter = count_signature_checks(s)
    tokens = [s.issue() for _ in range(4)]
    for token in tokens:
        s.issuer.verify(token)
    assert len(s.issuer._cache) == 3
    assert counter.calls == 4
    s.issuer.verify(tokens[0])  # evicted: verified again, still valid
    assert counter.calls == 5


# -- rotation ------------------------------------------------------------------------------


def test_rotated_key_signs_new_tokens_and_older_tokens_still_verify(s: Setup) -> None:
    old_token = s.issue()
    new_key, new_private = make_key("k2")
    s.provider.keys = [new_key, s.signing_key]

    new_token = s.issue()

    assert json.loads(base64.urlsafe_b64decode(new_token.split(".")[0] + "=="))["kid"] == "k2"
    assert s.issuer.verify(old_token)
    assert s.issuer.verify(new_token)
    jwks = s.issuer.jwks()
    assert [jwk["kid"] for jwk in jwks["keys"]] == ["k2", "k1"]
    for jwk, private in zip(jwks["keys"], [new_private, s.private], strict=True):
        raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        assert jwk == {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64url(raw),
            "kid": jwk["kid"],
            "use": "sig",
            "alg": "EdDSA",
        }
        assert "d" not in jwk  # never the private part


def test_retired_key_stops_verifying_even_cached_tokens(s: Setup) -> None:
    old_token = s.issue()
    assert s.issuer.verify(old_token)  # cached under k1
    new_key, _ = make_key("k2")
    s.provider.keys = [new_key]
    refused(s, old_token)
    assert [jwk["kid"] for jwk in s.issuer.jwks()["keys"]] == ["k2"]


def test_jwks_keys_verify_issued_tokens_with_plain_pyjwt(s: Setup) -> None:
    # An independent verifier using only the published JWKS accepts our tokens.
    import jwt

    token = s.issue()
    jwk = s.issuer.jwks()["keys"][0]
    public = jwt.PyJWK(jwk).key
    payload = jwt.decode(
        token,
        public,
        algorithms=["EdDSA"],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert payload["iss"] == ISSUER


def test_provider_without_keys_cannot_issue_or_verify() -> None:
    s = Setup()
    token = s.issue()
    s.provider.keys = []
    with pytest.raises(KeyUnavailableError):
        s.issue()
    with pytest.raises(KeyUnavailableError):
        s.issuer.verify(token)


def test_mismatched_private_and_public_key_is_rejected_before_signing() -> None:
    s = Setup()
    other, _ = make_key("k1")
    s.provider.keys = [SigningKey("k1", s.signing_key.private_pem, other.public_pem)]
    with pytest.raises(KeyUnavailableError, match="differ"):
        s.issue()


def test_duplicate_kids_are_rejected() -> None:
    s = Setup()
    s.provider.keys = [s.signing_key, make_key("k1")[0]]
    with pytest.raises(KeyUnavailableError, match="duplicate"):
        s.issue()


def test_expired_tokens_leave_the_verified_cache_without_being_presented_again(s: Setup) -> None:
    """The cache holds the tokens in use, not every token ever verified: a worker that sees a new
    token per login would otherwise grow for hours (the soak's RSS slope)."""
    first_wave = [s.issue() for _ in range(50)]
    for token in first_wave:
        s.issuer.verify(token)
    assert s.issuer.cached_tokens() == 50
    s.clock.advance(901)  # every one of them expired, none presented again
    for _ in range(30):
        s.issuer.verify(s.issuer.issue(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), "member", s.clock.now).token)
    assert s.issuer.cached_tokens() == 30  # the 50 expired ones are gone, the 30 in use stay
    refused(s, first_wave[0])  # and an expired token is still refused
