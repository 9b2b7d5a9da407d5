"""Short-lived access tokens: issued at login/refresh, verified on every request.

Verification is synchronous on purpose: it is CPU-bound, fast and on the hot path of every
request, so it must not pay for an executor hop."""

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from application.errors import NotAuthenticated


class InvalidToken(NotAuthenticated):
    """The access token is invalid or has expired."""

    code = "invalid_token"


@dataclass(frozen=True)
class AccessClaims:
    sub: UUID  # user id
    sid: UUID  # session id (the revocation handle)
    org: UUID  # active organisation
    prole: str  # the user's role in that organisation
    auth_time: datetime  # when the user last actually authenticated (step-up decisions)
    iat: datetime
    exp: datetime
    jti: str


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int  # seconds, for the OAuth-style `expires_in` response field
    claims: AccessClaims


class TokenIssuer(Protocol):
    def issue(self, sub: UUID, sid: UUID, org: UUID, prole: str, auth_time: datetime) -> IssuedToken:
        """Sign a new access token with the active key."""
        ...

    def verify(self, token: str) -> AccessClaims:
        """The token's claims, or InvalidToken. Says nothing about revocation: check `sid` too."""
        ...

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public keys that verify tokens, as a JWK Set ({"keys": [...]})."""
        ...
