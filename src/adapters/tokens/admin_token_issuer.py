"""Admin session tokens: EdDSA JWTs signed with the keyring's signing keys, but with their own
token type and audience. The user-token verifier pins `typ: at+jwt` and the API audience, this one
pins `typ: bulwark-admin+jwt` and `aud: bulwark-admin`: neither accepts the other's tokens."""

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import jwt
import msgspec

from adapters.tokens.jwt_issuer import ALGORITHM, EdDsaJwtIssuer
from application.ports.admin_tokens import AdminClaims, InvalidAdminToken
from application.ports.key_provider import KeyProvider
from domain.platform_admins import ADMIN_AUDIENCE

ADMIN_TOKEN_TYPE = "bulwark-admin+jwt"  # noqa: S105 - a media type, not a secret
_ALLOWED_HEADER = frozenset({"alg", "typ", "kid"})
_REQUIRED = ("iss", "aud", "sub", "sid", "auth_time", "iat", "exp", "jti")
_MAX_TOKEN_CHARS = 2048
_ENCODER = msgspec.json.Encoder()


def _epoch(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return int(moment.timestamp())


def _uuid(payload: dict[str, Any], name: str) -> UUID:
    value = payload[name]
    try:
        parsed = UUID(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or str(parsed) != value:
        raise InvalidAdminToken()
    return parsed


def _int(payload: dict[str, Any], name: str) -> int:
    value = payload[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidAdminToken()
    return value


class EdDsaAdminTokens:
    """`AdminTokenIssuer`. Key handling (loading, rotation, pinned `kid` lookup) is the user-token
    issuer's, shared through `keys`, so both always sign with the keyring's active key."""

    def __init__(self, key_provider: KeyProvider, *, issuer: str, clock: Callable[[], datetime]) -> None:
        # The user-token issuer instance only lends its key set; its audience is never used here.
        self._keys = EdDsaJwtIssuer(key_provider, issuer=issuer, audience=ADMIN_AUDIENCE, clock=clock)
        self._issuer = issuer
        self._clock = clock
        self._jws = jwt.PyJWS()
        self._jwt = jwt.PyJWT()

    def issue(self, sub: UUID, sid: UUID, auth_time: datetime, expires_at: datetime) -> str:
        key = self._keys.current_keys().active
        assert key.private is not None
        iat = _epoch(self._clock())
        exp = _epoch(expires_at)
        if exp <= iat:
            raise ValueError("an admin token must expire after it is issued")
        payload = {
            "iss": self._issuer,
            "aud": ADMIN_AUDIENCE,
            "sub": str(sub),
            "sid": str(sid),
            "auth_time": _epoch(auth_time),
            "iat": iat,
            "exp": exp,
            "jti": secrets.token_urlsafe(16),
        }
        return self._jws.encode(
            _ENCODER.encode(payload),
            key.private,
            algorithm=ALGORITHM,
            headers={"typ": ADMIN_TOKEN_TYPE, "kid": key.kid},
        )

    def verify(self, token: str) -> AdminClaims:
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_CHARS:
            raise InvalidAdminToken()
        key_set = self._keys.current_keys()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidAdminToken() from None
        kid = header.get("kid")
        if (
            set(header) - _ALLOWED_HEADER
            or header.get("alg") != ALGORITHM
            or header.get("typ") != ADMIN_TOKEN_TYPE
            or not isinstance(kid, str)
            or kid not in key_set.by_kid
        ):
            raise InvalidAdminToken()
        try:
            payload = self._jwt.decode(
                token,
                key_set.by_kid[kid].public,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                audience=ADMIN_AUDIENCE,
                options={
                    "require": list(_REQUIRED),
                    "strict_aud": True,
                    "verify_exp": False,  # checked below against the injected clock
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError:
            raise InvalidAdminToken() from None
        now = _epoch(self._clock())
        exp, iat, auth_time = _int(payload, "exp"), _int(payload, "iat"), _int(payload, "auth_time")
        if now >= exp or iat > now or not auth_time <= iat < exp:
            raise InvalidAdminToken()
        jti = payload["jti"]
        if not isinstance(jti, str) or not jti:
            raise InvalidAdminToken()
        return AdminClaims(
            sub=_uuid(payload, "sub"),
            sid=_uuid(payload, "sid"),
            auth_time=datetime.fromtimestamp(auth_time, UTC),
            iat=datetime.fromtimestamp(iat, UTC),
            exp=datetime.fromtimestamp(exp, UTC),
            jti=jti,
        )
