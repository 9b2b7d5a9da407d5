"""EdDSA (Ed25519) access tokens (RFC 9068 profile, `typ: at+jwt`) with PyJWT.

Verification is pinned rather than negotiated: one algorithm, one token type, keys looked up by
`kid` among the provider's own keys only, and a token must carry exactly the header parameters we
write. Successful verifications are cached until the token's `exp`, because signature checks are
the hot path of every request."""

import base64
import binascii
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from application.ports.key_provider import KeyProvider, KeyUnavailableError, SigningKey
from application.ports.token_issuer import AccessClaims, InvalidToken, IssuedToken

ALGORITHM = "EdDSA"
TOKEN_TYPE = "at+jwt"  # noqa: S105 - the RFC 9068 media type, not a secret
# Exactly what `issue` writes. Anything else (jku, x5u, jwk, x5c, crit, b64, cty...) is refused:
# those parameters let a token choose its own key or change how it is processed.
_ALLOWED_HEADER = frozenset({"alg", "typ", "kid"})
_REQUIRED_CLAIMS = ("iss", "aud", "sub", "sid", "org", "prole", "auth_time", "iat", "exp", "jti")
_MAX_TOKEN_CHARS = 4096  # ours are ~450; don't parse arbitrarily large input
_ENCODER = msgspec.json.Encoder()
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class _Key:
    kid: str
    public: Ed25519PublicKey
    private: Ed25519PrivateKey | None  # only the active key is loaded for signing
    jwk: dict[str, str]


@dataclass(frozen=True)
class _KeySet:
    fingerprint: tuple[tuple[str, bytes, bytes], ...]
    active: _Key
    by_kid: dict[str, _Key]


@dataclass(frozen=True)
class _Cached:
    claims: AccessClaims
    exp: int


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _is_canonical_b64url(segment: str) -> bool:
    # Base64 decoders ignore the unused low bits of the last character, so several strings decode
    # to the same bytes. Insisting on the canonical one keeps "one token, one string" (the cache key).
    try:
        decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return False
    return _b64url(decoded) == segment


def _epoch(moment: datetime) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("datetimes must be timezone-aware")
    return int(moment.timestamp())


def _from_epoch(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _int_claim(payload: dict[str, Any], name: str) -> int:
    value = payload[name]
    # bool is an int subclass; floats are not what we issue.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidToken(f"claim {name!r} must be an integer timestamp")
    return value


def _uuid_claim(payload: dict[str, Any], name: str) -> UUID:
    value = payload[name]
    if not isinstance(value, str):
        raise InvalidToken(f"claim {name!r} must be a UUID")
    try:
        parsed = UUID(value)
    except ValueError:
        raise InvalidToken(f"claim {name!r} must be a UUID") from None
    if str(parsed) != value:  # UUID() also accepts braces, urn: and missing hyphens
        raise InvalidToken(f"claim {name!r} must be a canonical UUID")
    return parsed


def _str_claim(payload: dict[str, Any], name: str) -> str:
    value = payload[name]
    if not isinstance(value, str) or not value:
        raise InvalidToken(f"claim {name!r} must be a non-empty string")
    return value


def _load_key(signing_key: SigningKey, *, with_private: bool) -> _Key:
    public = load_pem_public_key(signing_key.public_pem)
    if not isinstance(public, Ed25519PublicKey):
        raise KeyUnavailableError(f"signing key {signing_key.kid!r} is not an Ed25519 key")
    raw_public = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    private: Ed25519PrivateKey | None = None
    if with_private:
        loaded = load_pem_private_key(signing_key.private_pem, password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise KeyUnavailableError(f"signing key {signing_key.kid!r} is not an Ed25519 key")
        # A mismatched pair would issue tokens nobody can verify.
        if loaded.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) != raw_public:
            raise KeyUnavailableError(f"signing key {signing_key.kid!r}: private and public keys differ")
        private = loaded
    jwk = {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64url(raw_public),
        "kid": signing_key.kid,
        "use": "sig",
        "alg": ALGORITHM,
    }
    return _Key(kid=signing_key.kid, public=public, private=private, jwk=jwk)


class EdDsaJwtIssuer:
    """TokenIssuer over the KeyProvider's Ed25519 signing keys (active first)."""

    def __init__(
        self,
        key_provider: KeyProvider,
        *,
        issuer: str,
        audience: str,
        ttl_seconds: int = 900,
        clock: Callable[[], datetime],
        leeway_seconds: int = 0,
        max_cached_tokens: int = 100_000,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        if leeway_seconds < 0:
            raise ValueError("leeway_seconds must not be negative")
        if not issuer or not audience:
            raise ValueError("issuer and audience are required")
        self._provider = key_provider
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl_seconds
        self._clock = clock
        self._leeway = leeway_seconds
        self._max_cached = max_cached_tokens
        self._jwt = jwt.PyJWT()
        self._jws = jwt.PyJWS()
        self._lock = threading.Lock()  # the cache and key set may be shared across worker threads
        self._keys: _KeySet | None = None
        self._cache: OrderedDict[str, _Cached] = OrderedDict()

    # -- keys -------------------------------------------------------------------------------

    def _key_set(self) -> _KeySet:
        """The provider's current keys, re-parsed only when they change (rotation)."""
        signing_keys = self._provider.signing_keys()
        fingerprint = tuple((k.kid, k.public_pem, k.private_pem) for k in signing_keys)
        current = self._keys
        if current is not None and current.fingerprint == fingerprint:
            return current
        if not signing_keys:
            raise KeyUnavailableError("no signing keys configured")
        by_kid: dict[str, _Key] = {}
        for position, signing_key in enumerate(signing_keys):
            if signing_key.kid in by_kid:
                raise KeyUnavailableError(f"duplicate signing key id {signing_key.kid!r}")
            by_kid[signing_key.kid] = _load_key(signing_key, with_private=position == 0)
        key_set = _KeySet(fingerprint=fingerprint, active=by_kid[signing_keys[0].kid], by_kid=by_kid)
        with self._lock:
            self._keys = key_set
            # A retired key must stop verifying at once, cached tokens included.
            self._cache.clear()
        return key_set

    def current_keys(self) -> _KeySet:
        """The parsed keys, for the admin-token issuer that signs with the same keyring."""
        return self._key_set()

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [dict(key.jwk) for key in self._key_set().by_kid.values()]}

    # -- issuing ----------------------------------------------------------------------------

    def issue(self, sub: UUID, sid: UUID, org: UUID, prole: str, auth_time: datetime) -> IssuedToken:
        if not prole:
            raise ValueError("prole must not be empty")
        key = self._key_set().active
        assert key.private is not None  # loaded for the active key by _key_set
        iat = _epoch(self._clock())
        auth_ts = _epoch(auth_time)
        if auth_ts > iat:
            raise ValueError("auth_time is in the future")
        exp = iat + self._ttl
        jti = secrets.token_urlsafe(16)
        payload = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(sub),
            "sid": str(sid),
            "org": str(org),
            "prole": prole,
            "auth_time": auth_ts,
            "iat": iat,
            "exp": exp,
            "jti": jti,
        }
        # PyJWS signs the claims as encoded here: PyJWT's own claim encoding (json.dumps with its
        # checks for claims given as datetimes) was a sixth of the signing's cost; these are ints.
        token = self._jws.encode(
            _ENCODER.encode(payload),
            key.private,
            algorithm=ALGORITHM,
            headers={"typ": TOKEN_TYPE, "kid": key.kid},
        )
        claims = AccessClaims(
            sub=sub,
            sid=sid,
            org=org,
            prole=prole,
            auth_time=_from_epoch(auth_ts),
            iat=_from_epoch(iat),
            exp=_from_epoch(exp),
            jti=jti,
        )
        return IssuedToken(token=token, expires_in=self._ttl, claims=claims)

    # -- verifying --------------------------------------------------------------------------

    def verify(self, token: str) -> AccessClaims:
        key_set = self._key_set()  # first: a key change clears the cache before we read it
        now = _epoch(self._clock())
        with self._lock:
            cached = self._cache.get(token)
            if cached is not None:
                if now < cached.exp + self._leeway:
                    self._cache.move_to_end(token)
                    return cached.claims
                del self._cache[token]
                raise InvalidToken("token expired")
        claims, exp = self._verify_uncached(token, key_set, now)
        with self._lock:
            # Only a key set still current may populate the cache (a rotation may have raced us).
            if self._keys is key_set:
                self._cache[token] = _Cached(claims=claims, exp=exp)
                self._cache.move_to_end(token)
                while len(self._cache) > self._max_cached:
                    self._cache.popitem(last=False)
                self._drop_expired_oldest(now)
        return claims

    def _drop_expired_oldest(self, now: int) -> None:
        """Expired entries leave from the least recently used end, two per insertion (so they
        leave faster than new ones arrive). Without this an expired token stayed until the cap
        pushed it out: a worker verifying many distinct tokens (every login's) grew towards
        `max_cached_tokens` entries of ~1.3 KB each, about 130 MB, found by the soak."""
        for _ in range(2):
            oldest = next(iter(self._cache.values()), None)
            if oldest is None or now < oldest.exp + self._leeway:
                return
            self._cache.popitem(last=False)

    def cached_tokens(self) -> int:
        """Verified tokens held (for tests and metrics)."""
        return len(self._cache)

    def _verify_uncached(self, token: str, key_set: _KeySet, now: int) -> tuple[AccessClaims, int]:
        if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS:
            raise InvalidToken("malformed token")
        # Three non-empty base64url segments: refuses unsigned (`h.p.`) and stripped (`h.p`) forms
        # before any library gets to interpret them.
        if _COMPACT_JWS.fullmatch(token) is None:
            raise InvalidToken("malformed token")
        if not all(_is_canonical_b64url(segment) for segment in token.split(".")):
            raise InvalidToken("malformed token")
        key = self._pinned_key(token, key_set)
        try:
            payload = self._jwt.decode(
                token,
                key.public,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                audience=self._audience,
                options={
                    "require": list(_REQUIRED_CLAIMS),
                    "strict_aud": True,  # aud must be exactly our audience, not a list containing it
                    # PyJWT reads time.time(); the time checks below use the injected clock.
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(f"token rejected: {error}") from None
        return self._claims(payload, now)

    def _pinned_key(self, token: str, key_set: _KeySet) -> _Key:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed token header") from None
        unexpected = set(header) - _ALLOWED_HEADER
        if unexpected:
            raise InvalidToken(f"unexpected token header parameters: {sorted(unexpected)}")
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("unexpected token algorithm")
        if header.get("typ") != TOKEN_TYPE:
            raise InvalidToken("unexpected token type")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken("token has no key id")
        key = key_set.by_kid.get(kid)  # a dict lookup: the kid is never a path, URL or query
        if key is None:
            raise InvalidToken("unknown signing key")
        return key

    def _claims(self, payload: dict[str, Any], now: int) -> tuple[AccessClaims, int]:
        # Re-check what PyJWT checked: these are the claims everything downstream trusts.
        if payload["iss"] != self._issuer or payload["aud"] != self._audience:
            raise InvalidToken("token is for another issuer or audience")
        exp = _int_claim(payload, "exp")
        iat = _int_claim(payload, "iat")
        auth_time = _int_claim(payload, "auth_time")
        if now >= exp + self._leeway:
            raise InvalidToken("token expired")
        if iat > now + self._leeway:
            raise InvalidToken("token issued in the future")
        if not auth_time <= iat < exp:
            raise InvalidToken("token times are inconsistent")
        claims = AccessClaims(
            sub=_uuid_claim(payload, "sub"),
            sid=_uuid_claim(payload, "sid"),
            org=_uuid_claim(payload, "org"),
            prole=_str_claim(payload, "prole"),
            auth_time=_from_epoch(auth_time),
            iat=_from_epoch(iat),
            exp=_from_epoch(exp),
            jti=_str_claim(payload, "jti"),
        )
        return claims, exp
