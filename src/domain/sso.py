"""Single sign-on: the providers, what a validated id_token told us, and the linking rule.

The linking rule is the heart of it: an SSO sign-in whose email matches an existing account may
take that account over only when the provider vouches for the address. Linking on an unverified
or mutable email is how accounts get stolen (the "nOAuth" class of Azure AD bugs: Azure's plain
`email` claim is whatever the tenant's administrator typed)."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

from domain.text_rules import has_control_characters

SSO_STATE_TTL = timedelta(minutes=10)
RETURN_TO_MAX = 512
DEFAULT_RETURN_TO = "/"
# A password hash no hasher produces: the account signs in only through its linked identities
# until its owner sets a password through the reset flow.
NO_PASSWORD = "!sso-only"  # noqa: S105 -- a marker, not a secret


def has_password(password_hash: str) -> bool:
    """False for the markers no hash can match (SSO-only accounts, closed accounts)."""
    return bool(password_hash) and not password_hash.startswith("!")


class SsoProvider(StrEnum):
    GOOGLE = "google"
    AZURE = "azure"
    OIDC = "oidc"  # a generic OpenID provider configured by issuer URL


class SsoPurpose(StrEnum):
    LOGIN = "login"  # sign in (or sign up)
    LINK = "link"  # link to the signed-in account, whatever the email


def provider_named(name: str) -> SsoProvider | None:
    try:
        return SsoProvider(name)
    except ValueError:
        return None


@dataclass(frozen=True)
class SsoClaims:
    """What a validated id_token says about the person (signature, issuer, audience, expiry and
    nonce already checked by the OIDC adapter)."""

    issuer: str
    subject: str
    email: str | None = None
    email_verified: object = None  # exactly as sent: only the JSON `true` counts
    name: str | None = None
    tenant_id: str | None = None  # Azure `tid`
    object_id: str | None = None  # Azure `oid`
    xms_edov: object = None  # Azure's optional "email domain owner verified" claim
    amr: tuple[str, ...] = ()

    @property
    def provider_mfa(self) -> bool:
        return "mfa" in self.amr


@dataclass(frozen=True)
class IdentityKey:
    """What names a person at a provider for good: issuer + `sub`; for Azure, tenant + object id
    (Azure's `sub` is pairwise per application, `oid` is the user's id within the tenant)."""

    provider: SsoProvider
    issuer: str
    subject: str


def identity_key(provider: SsoProvider, claims: SsoClaims) -> IdentityKey:
    if provider is SsoProvider.AZURE:
        if not claims.tenant_id or not claims.object_id:
            raise ValueError("an Azure id_token without tid and oid names nobody")
        return IdentityKey(provider, f"azure-tenant:{claims.tenant_id}", claims.object_id)
    return IdentityKey(provider, claims.issuer, claims.subject)


def vouched_email(provider: SsoProvider, claims: SsoClaims) -> str | None:
    """The email the provider vouches for, or None.

    Google and a generic OIDC provider vouch with `email_verified: true`. Azure's `email` is not
    verified by Microsoft (any tenant administrator can set it to anything); only the optional
    `xms_edov: true` claim says the domain owner verified it. Only a JSON `true` counts: "true",
    1 and the like are refused."""
    if not claims.email:
        return None
    if provider is SsoProvider.AZURE:
        return claims.email if claims.xms_edov is True else None
    return claims.email if claims.email_verified is True else None


class LinkOutcome(StrEnum):
    SIGN_IN = "sign_in"  # a known link: that account
    LINK_AND_SIGN_IN = "link_and_sign_in"  # an account with the vouched email: link it
    REQUIRE_LOGIN = "require_login"  # an account with this email, not vouched: no link, no sign-in
    CREATE = "create"  # nobody yet: a new account


@dataclass(frozen=True)
class LinkDecision:
    outcome: LinkOutcome
    user_id: UUID | None = None
    email_verified: bool = False  # for CREATE: the new account's address is proven


def decide_sign_in(
    provider: SsoProvider,
    claims: SsoClaims,
    linked_user: UUID | None,
    user_with_email: UUID | None,
) -> LinkDecision:
    """The linking rule, for a sign-in (not the signed-in user's explicit link).

    `linked_user`: the account already linked to this identity; `user_with_email`: the account
    whose address equals the token's email (None when the token has none)."""
    if linked_user is not None:
        return LinkDecision(LinkOutcome.SIGN_IN, linked_user)
    vouched = vouched_email(provider, claims) is not None
    if user_with_email is not None:
        if vouched:
            return LinkDecision(LinkOutcome.LINK_AND_SIGN_IN, user_with_email)
        return LinkDecision(LinkOutcome.REQUIRE_LOGIN, user_with_email)
    return LinkDecision(LinkOutcome.CREATE, None, email_verified=vouched)


def safe_return_to(value: str | None) -> str | None:
    """A path on the frontend's origin, or None when `value` could lead anywhere else.

    Only an absolute path: no scheme, no host, no `//host` or `/\\host` (browsers read both as
    another host), no backslashes or control characters at all (some browsers turn `\\` into
    `/` and drop tabs and newlines before parsing)."""
    if value is None or value == "":
        return DEFAULT_RETURN_TO
    if len(value) > RETURN_TO_MAX or not value.startswith("/"):
        return None
    if value.startswith("//") or "\\" in value or has_control_characters(value):
        return None
    if any(ch.isspace() for ch in value):
        return None
    if not value.isascii() or not value.isprintable():
        # It goes into a Location header, which carries only ASCII: anything else would fail to
        # encode after the session was made (the SPA percent-encodes its own paths).
        return None
    return value


@dataclass(frozen=True)
class SsoState:
    """A pending sign-in: the browser comes back with `state`; only its digest is kept. Single
    use, ten minutes, and bound to the browser that started it by a cookie (`browser_hash`)."""

    state_hash: str
    provider: SsoProvider
    purpose: SsoPurpose
    nonce: str
    code_verifier: str  # PKCE (S256)
    browser_hash: str
    return_to: str
    created_at: datetime
    expires_at: datetime
    user_id: UUID | None = None  # link mode: the signed-in account
    session_id: UUID | None = None  # link mode: its session, which must still be live

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at


@dataclass(frozen=True)
class SsoIdentity:
    id: UUID
    user_id: UUID
    provider: SsoProvider
    issuer: str
    subject: str
    email: str | None  # the email at link time, as the provider sent it
    linked_at: datetime
    last_used_at: datetime | None = field(default=None)
