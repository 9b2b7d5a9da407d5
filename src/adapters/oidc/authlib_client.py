"""`OidcClient` on authlib: the authorization URL and the code exchange by `AsyncOAuth2Client`
(PKCE S256), the id_token's signature by joserfc (authlib's JOSE layer) against the provider's
cached JWKS, and its claims by authlib's `CodeIDToken` (iss, aud, azp, exp, iat, nonce, at_hash).
Nothing of the token is trusted before all of that holds."""

import math
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from authlib.deprecate import AuthlibDeprecationWarning
from authlib.integrations.base_client import OAuthError
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from adapters.oidc.discovery import DiscoveryCache, get_json
from adapters.oidc.jwks_cache import JwksCache
from application.ports.oidc import AuthorizationRequest, OidcRefused, OidcUnavailable
from domain.sso import SsoClaims

with warnings.catch_warnings():
    # authlib >= 1.9 would rather run on the `httpx2` fork and says so once, on stderr, at import
    # (every CLI command would print it); httpx is this project's HTTP client, and authlib's own
    # shim falls back to it.
    warnings.filterwarnings("ignore", "The httpx module is deprecated", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client

# Signatures by a key only the provider holds; never `none`, never a shared-secret HMAC.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
TENANT_PLACEHOLDER = "{tenantid}"
_TENANT_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_SCOPE = "openid email profile"


@dataclass(frozen=True)
class OidcProviderConfig:
    """One provider as configured. `issuer` is the exact issuer the provider's id_tokens carry,
    and its discovery document must name it; None (Azure, whose tenant may be given by name):
    the issuer named by the discovery document at the configured authority. For Azure's
    multi-tenant endpoints (`common`, `organizations`) that issuer holds `{tenantid}`, filled
    from each token's own `tid` claim before comparing (never skipped)."""

    name: str
    display_name: str
    discovery_url: str
    issuer: str | None
    client_id: str
    client_secret: str
    redirect_uri: str
    leeway_seconds: int = 60
    max_token_age_seconds: int = 600  # an id_token issued longer ago than the flow may last is old


class AuthlibOidcClient:
    def __init__(
        self,
        config: OidcProviderConfig,
        *,
        timeout_seconds: float = 10.0,
        jwks_min_refetch_seconds: float = 60.0,
        now: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not math.isfinite(timeout_seconds) or timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be a positive number")
        self.config = config
        self._timeout = timeout_seconds
        self._now = now
        self._transport = transport
        self._http = httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False, transport=transport)
        configured = urlsplit(config.issuer or config.discovery_url)
        self._discovery = DiscoveryCache(
            self._http, config.discovery_url, issuer=config.issuer, https_only=configured.scheme == "https"
        )
        self._jwks = JwksCache(self._fetch_jwks, min_refetch_seconds=jwks_min_refetch_seconds)

    def __repr__(self) -> str:
        return f"AuthlibOidcClient(name={self.config.name!r}, discovery={self.config.discovery_url!r})"

    @property
    def display_name(self) -> str:
        return self.config.display_name

    async def close(self) -> None:
        await self._http.aclose()

    async def _metadata(self) -> dict[str, Any]:
        # Checked by the cache: the configured issuer, and https wherever the issuer is https.
        return await self._discovery.document()

    async def _fetch_jwks(self) -> dict[str, Any]:
        metadata = await self._metadata()
        return await get_json(self._http, metadata["jwks_uri"])

    def _oauth_client(self, metadata: dict[str, Any]) -> AsyncOAuth2Client:
        methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        method = "client_secret_basic" if "client_secret_basic" in methods else "client_secret_post"
        return AsyncOAuth2Client(
            client_id=self.config.client_id,
            client_secret=self.config.client_secret,
            token_endpoint_auth_method=method,
            scope=_SCOPE,
            redirect_uri=self.config.redirect_uri,
            code_challenge_method="S256",
            timeout=self._timeout,
            follow_redirects=False,
            transport=self._transport,
        )

    async def authorization_url(self, request: AuthorizationRequest) -> str:
        metadata = await self._metadata()
        async with self._oauth_client(metadata) as client:
            url, _ = client.create_authorization_url(
                metadata["authorization_endpoint"],
                state=request.state,
                code_verifier=request.code_verifier,
                nonce=request.nonce,
                response_type="code",
            )
        return str(url)

    async def complete(
        self, *, code: str, code_verifier: str, nonce: str, iss_parameter: str | None
    ) -> SsoClaims:
        metadata = await self._metadata()
        self._check_iss_parameter(metadata, iss_parameter)
        tokens = await self._exchange(metadata, code, code_verifier)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise OidcRefused("no_id_token")
        claims = await self._validated(metadata, id_token, nonce, tokens.get("access_token"))
        if iss_parameter is not None and iss_parameter != claims["iss"]:
            raise OidcRefused("iss_parameter_not_the_tokens")
        return _sso_claims(claims)

    def _check_iss_parameter(self, metadata: dict[str, Any], iss_parameter: str | None) -> None:
        """RFC 9207: the authorization response names its issuer; one naming another provider is
        a mix-up attack (the code must not go to this provider's token endpoint). A provider that
        says it always sends `iss` and did not is refused too."""
        if iss_parameter is None:
            if metadata.get("authorization_response_iss_parameter_supported") is True:
                raise OidcRefused("iss_parameter_missing")
            return
        if not _issuer_matches(metadata["issuer"], iss_parameter):
            raise OidcRefused("iss_parameter_mismatch")

    async def _exchange(self, metadata: dict[str, Any], code: str, code_verifier: str) -> dict[str, Any]:
        try:
            async with self._oauth_client(metadata) as client:
                token = await client.fetch_token(
                    metadata["token_endpoint"],
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=code_verifier,
                )
        except OAuthError as error:
            raise OidcRefused(f"exchange_failed:{error.error}") from None
        except httpx.HTTPError as error:
            raise OidcUnavailable(f"token endpoint: {type(error).__name__}") from None
        except ValueError:
            raise OidcRefused("exchange_failed:malformed") from None
        return dict(token)

    async def _validated(
        self, metadata: dict[str, Any], id_token: str, nonce: str, access_token: object
    ) -> dict[str, Any]:
        offered = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = [a for a in offered if a in ASYMMETRIC_ALGORITHMS]
        if not algorithms:
            # An empty list would let joserfc fall back to its defaults, HS256 among them.
            raise OidcRefused("unsupported_algorithm")
        keys = await self._jwks.keys()
        try:
            try:
                decoded = jwt.decode(id_token, keys, algorithms=algorithms)
            except InvalidKeyIdError:
                fresh: KeySet | None = await self._jwks.refetch_for_unknown_kid()
                if fresh is None:
                    raise OidcRefused("unknown_kid") from None
                decoded = jwt.decode(id_token, fresh, algorithms=algorithms)
        except InvalidKeyIdError:
            raise OidcRefused("unknown_kid") from None
        except JoseError as error:
            raise OidcRefused(f"bad_signature:{error.error}") from None
        except ValueError:
            raise OidcRefused("malformed_id_token") from None
        return self._checked_claims(
            metadata["issuer"], dict(decoded.claims), dict(decoded.header), nonce, access_token
        )

    def _checked_claims(
        self, issuer: str, claims: dict[str, Any], header: dict[str, Any], nonce: str, access_token: object
    ) -> dict[str, Any]:
        now = int(self._now())
        oldest = now - self.config.max_token_age_seconds - self.config.leeway_seconds
        options: dict[str, Any] = {
            "iss": {"essential": True, "value": _expected_issuer(issuer, claims)},
            "sub": {"essential": True},
            "aud": {"essential": True, "value": self.config.client_id},
            "exp": {"essential": True},
            "iat": {"essential": True, "validate": lambda _, issued: issued >= oldest},
            "nonce": {"essential": True, "value": nonce},
        }
        params: dict[str, Any] = {"nonce": nonce, "client_id": self.config.client_id}
        if isinstance(access_token, str):
            params["access_token"] = access_token
        checked = CodeIDToken(claims, header, options, params)
        try:
            checked.validate(now=now, leeway=self.config.leeway_seconds)
        except ExpiredTokenError:
            raise OidcRefused("expired") from None
        except JoseError as error:
            raise OidcRefused(f"invalid_claim:{getattr(error, 'claim', None) or error.error}") from None
        return claims


def _expected_issuer(issuer: str, claims: dict[str, Any]) -> str:
    if TENANT_PLACEHOLDER not in issuer:
        return issuer
    tenant = claims.get("tid")
    if not isinstance(tenant, str) or not _TENANT_ID.fullmatch(tenant):
        raise OidcRefused("invalid_claim:tid")
    return issuer.replace(TENANT_PLACEHOLDER, tenant)


def _issuer_matches(configured: str, presented: str) -> bool:
    if TENANT_PLACEHOLDER not in configured:
        return presented == configured
    before, _, after = configured.partition(TENANT_PLACEHOLDER)
    if not (presented.startswith(before) and presented.endswith(after)):
        return False
    tenant = presented[len(before) : len(presented) - len(after)]
    return bool(_TENANT_ID.fullmatch(tenant))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _sso_claims(claims: dict[str, Any]) -> SsoClaims:
    amr = claims.get("amr")
    return SsoClaims(
        issuer=str(claims["iss"]),
        subject=str(claims["sub"]),
        email=_text(claims.get("email")),
        email_verified=claims.get("email_verified"),
        name=_text(claims.get("name")),
        tenant_id=_text(claims.get("tid")),
        object_id=_text(claims.get("oid")),
        xms_edov=claims.get("xms_edov"),
        amr=tuple(a for a in amr if isinstance(a, str)) if isinstance(amr, list) else (),
    )
