"""What the single sign-on use cases share: their ports, the provider look-up, the refusal the
callback turns into a redirect, and the start of a flow (state, nonce, PKCE verifier, browser
binding) for both sign-in and link mode."""

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID

from application.errors import ApplicationError, DependencyUnavailable, InvalidInput, NotFound
from application.identity import IdentityDeps
from application.ports.oidc import AuthorizationRequest, OidcClient, OidcUnavailable
from domain.sessions import token_digest
from domain.sso import SSO_STATE_TTL, SsoProvider, SsoPurpose, SsoState, provider_named, safe_return_to


class ProviderNotConfigured(NotFound):
    """This sign-in provider is not configured on this server."""

    code = "provider_not_configured"


class SsoCallbackFailed(ApplicationError):
    """The browser came back from the provider but nobody is signed in; `code` says why (the
    callback redirects to the SPA with `error=<code>`)."""


@dataclass
class SsoPorts:
    identity: IdentityDeps
    clients: Mapping[SsoProvider, OidcClient]


def configured_client(ports: SsoPorts, name: str) -> tuple[SsoProvider, OidcClient]:
    provider = provider_named(name)
    client = ports.clients.get(provider) if provider is not None else None
    if provider is None or client is None:
        raise ProviderNotConfigured(f"Sign-in with {name[:40]!r} is not configured on this server.")
    return provider, client


def checked_return_to(value: str | None) -> str:
    safe = safe_return_to(value)
    if safe is None:
        raise InvalidInput(
            "return_to must be a path on this site, such as /settings.",
            code="invalid_return_to",
            field="return_to",
        )
    return safe


@dataclass(frozen=True)
class SsoStart:
    authorization_url: str
    browser_binding: str  # goes into the short cookie of the browser that starts the flow


async def begin_flow(
    ports: SsoPorts,
    provider: SsoProvider,
    client: OidcClient,
    purpose: SsoPurpose,
    return_to: str,
    *,
    user_id: UUID | None = None,
    session_id: UUID | None = None,
) -> SsoStart:
    """Stores the pending sign-in (only the digests of `state` and of the browser binding) and
    answers where to send the browser."""
    state = secrets.token_urlsafe(32)  # 256 random bits each
    nonce = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(48)  # 64 characters: RFC 7636 asks for 43 to 128
    binding = secrets.token_urlsafe(32)
    try:
        url = await client.authorization_url(AuthorizationRequest(state, nonce, verifier))
    except OidcUnavailable:
        raise DependencyUnavailable("The sign-in provider does not answer; try again later.") from None
    now = ports.identity.clock.now()
    async with ports.identity.uow() as uow:
        await uow.sso.add_state(
            SsoState(
                state_hash=token_digest(state),
                provider=provider,
                purpose=purpose,
                nonce=nonce,
                code_verifier=verifier,
                browser_hash=token_digest(binding),
                return_to=return_to,
                created_at=now,
                expires_at=now + SSO_STATE_TTL,
                user_id=user_id,
                session_id=session_id,
            )
        )
        await uow.commit()
    return SsoStart(url, binding)


__all__ = [
    "ProviderNotConfigured",
    "SsoCallbackFailed",
    "SsoPorts",
    "SsoStart",
    "begin_flow",
    "checked_return_to",
    "configured_client",
]
