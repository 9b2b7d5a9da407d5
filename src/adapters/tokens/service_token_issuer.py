"""The vault's service tokens: EdDSA JWTs per RFC 9068 (`typ: at+jwt`) with the vault's own
signing keys and audience. The public API holds none of these keys, so it cannot accept one, and
the vault knows none of the user-token keys, so it cannot accept a user token either."""

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from application.ports.service_tokens import InvalidServiceToken, IssuedServiceToken, ServiceToken

ALGORITHM = "EdDSA"
TOKEN_TYPE = "at+jwt"  # noqa: S105 - the RFC 9068 media type, not a secret
_ALLOWED_HEADER = frozenset({"alg", "typ", "kid"})
_REQUIRED = ["iss", "aud", "sub", "client_id", "scope", "iat", "exp", "jti"]
_MAX_TOKEN_CHARS = 4096
_CACHE_SIZE = 4096


class EdDsaServiceTokens:
    def __init__(
        self,
        signing_keys: Mapping[str, bytes],
        active_kid: str,
        *,
        issuer: str,
        audience: str,
        ttl_seconds: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._private: dict[str, Ed25519PrivateKey] = {}
        for kid, pem in signing_keys.items():
            key = load_pem_private_key(pem, password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError(f"service signing key {kid!r} is not Ed25519")
            self._private[kid] = key
        self._public: dict[str, Ed25519PublicKey] = {k: v.public_key() for k, v in self._private.items()}
        self._active = active_kid
        self.issuer, self.audience, self.ttl = issuer, audience, ttl_seconds
        self._clock = clock
        self._verified: OrderedDict[str, ServiceToken] = OrderedDict()

    def issue(self, client_id: UUID, scopes: frozenset[str]) -> IssuedServiceToken:
        now = int(self._clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(client_id),
            "client_id": str(client_id),
            "scope": " ".join(sorted(scopes)),
            "iat": now,
            "exp": now + self.ttl,
            "jti": secrets.token_urlsafe(16),
        }
        token = jwt.encode(
            claims,
            self._private[self._active],
            algorithm=ALGORITHM,
            headers={"typ": TOKEN_TYPE, "kid": self._active},
        )
        return IssuedServiceToken(token=token, expires_in=self.ttl)

    def verify(self, token: str) -> ServiceToken:
        """Verified tokens are remembered until they expire: a worker presents the same token
        for its five minutes, and a signature check costs more than the rest of an access."""
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at.timestamp() > self._clock():
                return known
            del self._verified[token]
        verified = self._verify(token)
        if len(self._verified) >= _CACHE_SIZE:
            self._verified.popitem(last=False)
        self._verified[token] = verified
        return verified

    def _verify(self, token: str) -> ServiceToken:
        if not token or len(token) > _MAX_TOKEN_CHARS:
            raise InvalidServiceToken("malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidServiceToken("malformed") from None
        if set(header) - _ALLOWED_HEADER or header.get("alg") != ALGORITHM or header.get("typ") != TOKEN_TYPE:
            raise InvalidServiceToken("unexpected header")
        key = self._public.get(str(header.get("kid")))
        if key is None:
            raise InvalidServiceToken("not signed by this vault")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                # Time is checked below against the clock that issued the token.
                options={"require": _REQUIRED, "verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
            client_id = UUID(str(claims["client_id"]))
            expires = int(claims["exp"])
        except (jwt.PyJWTError, ValueError, TypeError):
            raise InvalidServiceToken("invalid") from None
        if expires <= self._clock():
            raise InvalidServiceToken("expired")
        if claims["sub"] != str(client_id) or not isinstance(claims["scope"], str):
            raise InvalidServiceToken("invalid")
        return ServiceToken(
            client_id=client_id,
            scopes=frozenset(claims["scope"].split()),
            jti=str(claims["jti"]),
            expires_at=datetime.fromtimestamp(expires, UTC),
        )
