"""Admin session tokens: signed with the service's keys but for the admin audience only, so a
user access token never opens an admin route and an admin token never opens a user route."""

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from application.errors import NotAuthenticated


class InvalidAdminToken(NotAuthenticated):
    """The admin session is invalid or has ended; log in again."""

    code = "invalid_admin_session"


@dataclass(frozen=True)
class AdminClaims:
    sub: UUID  # the administrator's user id
    sid: UUID  # the admin session id (idle expiry and revocation live there)
    auth_time: datetime
    iat: datetime
    exp: datetime
    jti: str


class AdminTokenIssuer(Protocol):
    def issue(self, sub: UUID, sid: UUID, auth_time: datetime, expires_at: datetime) -> str:
        """A signed admin token, valid until `expires_at` (the session's absolute end)."""
        ...

    def verify(self, token: str) -> AdminClaims:
        """The token's claims, or InvalidAdminToken. Says nothing about the session: check `sid`."""
        ...
