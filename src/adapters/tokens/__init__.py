"""Access-token adapters (signed JWTs)."""

from adapters.tokens.jwt_issuer import EdDsaJwtIssuer

__all__ = ["EdDsaJwtIssuer"]
