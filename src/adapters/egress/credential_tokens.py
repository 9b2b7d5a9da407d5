"""Egress credentials as EdDSA JWTs (pyjwt), signed with the vault's signing keys under their
own type and audience: a vault service token is never an egress credential, nor the reverse.
The helper on the egress host holds only the public halves, so it verifies and cannot mint.
(An Ed25519 check compares no secret, so nothing here leaks timing about a valid credential.)"""

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from application.ports.egress_credentials import EgressCredentialRefused
from domain.egress_credentials import EgressCredential, EgressRefusal, parse_holder

ALGORITHM = "EdDSA"
TOKEN_TYPE = "egress+jwt"  # noqa: S105 - a token kind, not a secret
AUDIENCE = "bulwark-egress"
_ALLOWED_HEADER = frozenset({"alg", "typ", "kid"})
_REQUIRED = ["iss", "aud", "sub", "addr", "iat", "exp"]
_MAX_TOKEN_CHARS = 1024
_CACHE_SIZE = 8192


class EdDsaEgressCredentialSigner:
    def __init__(
        self, private_keys: Mapping[str, Ed25519PrivateKey], active_kid: str, *, issuer: str
    ) -> None:
        self._keys = dict(private_keys)
        self._active = active_kid
        self.issuer = issuer

    def sign(self, user_id: UUID, address: str, expires_at: datetime) -> str:
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": str(user_id),
            "addr": address,
            "iat": int(time.time()),
            "exp": int(expires_at.timestamp()),
        }
        return jwt.encode(
            claims,
            self._keys[self._active],
            algorithm=ALGORITHM,
            headers={"typ": TOKEN_TYPE, "kid": self._active},
        )


class EdDsaEgressCredentialVerifier:
    """Verified tokens are remembered (bounded, dropped at expiry): the signature check is the
    costliest step of an admission and its answer never changes. The ledger is never cached here."""

    def __init__(
        self,
        public_keys: Mapping[str, Ed25519PublicKey],
        *,
        issuer: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = dict(public_keys)
        self.issuer = issuer
        self._clock = clock
        self._verified: OrderedDict[str, EgressCredential] = OrderedDict()

    def verify(self, token: str) -> EgressCredential:
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at.timestamp() > self._clock():
                return known
            del self._verified[token]
        credential = self._verify(token)
        if len(self._verified) >= _CACHE_SIZE:
            self._verified.popitem(last=False)
        self._verified[token] = credential
        return credential

    def _verify(self, token: str) -> EgressCredential:
        if not token or len(token) > _MAX_TOKEN_CHARS:
            raise EgressCredentialRefused(EgressRefusal.MALFORMED)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise EgressCredentialRefused(EgressRefusal.MALFORMED) from None
        if set(header) - _ALLOWED_HEADER or header.get("alg") != ALGORITHM or header.get("typ") != TOKEN_TYPE:
            raise EgressCredentialRefused(EgressRefusal.FORGED)
        key = self._keys.get(str(header.get("kid")))
        if key is None:
            raise EgressCredentialRefused(EgressRefusal.FORGED)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=self.issuer,
                # Expiry is the domain rule's, against the helper's clock.
                options={"require": _REQUIRED, "verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
            parsed = parse_holder(str(claims["sub"]), str(claims["addr"]))
            expires = datetime.fromtimestamp(int(claims["exp"]), UTC)
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError):
            raise EgressCredentialRefused(EgressRefusal.FORGED) from None
        if parsed is None:
            raise EgressCredentialRefused(EgressRefusal.FORGED)
        return EgressCredential(user_id=parsed[0], address=parsed[1], expires_at=expires)
