"""The OpenID Connect client one configured provider is reached through."""

from dataclasses import dataclass
from typing import Protocol

from domain.sso import SsoClaims


class OidcRefused(Exception):
    """The provider's answer does not hold: the code was refused, or the id_token failed a check
    (signature, issuer, audience, authorized party, expiry, issue time, nonce). `reason` is a
    short machine word for the audit log, never shown to the browser in detail."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OidcUnavailable(Exception):
    """The provider (discovery, JWKS or token endpoint) did not answer usably."""


@dataclass(frozen=True)
class AuthorizationRequest:
    state: str
    nonce: str
    code_verifier: str  # the client sends its S256 challenge, and the verifier at the exchange


class OidcClient(Protocol):
    @property
    def display_name(self) -> str: ...

    async def authorization_url(self, request: AuthorizationRequest) -> str:
        """Where to send the browser (authorization code flow, PKCE S256, nonce, state)."""
        ...

    async def complete(
        self, *, code: str, code_verifier: str, nonce: str, iss_parameter: str | None
    ) -> SsoClaims:
        """Exchanges the code and validates the id_token; `iss_parameter` is the RFC 9207 `iss`
        of the authorization response when the provider sent one. Raises OidcRefused or
        OidcUnavailable."""
        ...
