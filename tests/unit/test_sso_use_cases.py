"""The SSO use cases on fakes (the real provider is in tests/e2e/test_sso_*.py): what the
callback does with each linking outcome, the state's binding, link mode, unlinking, and the JWKS
cache's rate-limited refetch."""

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc.jwk import RSAKey

from adapters.oidc.jwks_cache import JwksCache
from application.errors import Conflict, InvalidInput, NotFound
from application.identity import RequestContext
from application.ports.oidc import AuthorizationRequest, OidcRefused, OidcUnavailable
from application.sso_ports import ProviderNotConfigured, SsoCallbackFailed, SsoPorts
from application.step_up import ReauthRequired
from application.use_cases.login import Login, LoginResult
from application.use_cases.sessions import Logout, Principal
from application.use_cases.sso_identities import ListIdentities, StartIdentityLink, UnlinkIdentity
from application.use_cases.sso_sign_in import (
    CompleteSsoSignIn,
    SsoLinked,
    SsoMfaStep,
    SsoSignedIn,
    StartSsoSignIn,
)
from domain.mfa import TotpCredential
from domain.sso import NO_PASSWORD, SsoClaims, SsoProvider
from tests.unit.fakes import TOTP, USERS, Fakes, make_fakes, mutate, seed_user

CTX = RequestContext(ip="198.51.100.4")


@dataclass
class FakeOidcClient:
    """Hands out authorization URLs carrying the request, and answers `complete` with the claims
    a test queued (or a refusal)."""

    claims: SsoClaims | None = None
    refusal: str | None = None
    requests: list[AuthorizationRequest] = field(default_factory=list)
    completed: list[dict[str, object]] = field(default_factory=list)

    @property
    def display_name(self) -> str:
        return "Fake"

    async def authorization_url(self, request: AuthorizationRequest) -> str:
        self.requests.append(request)
        return f"https://idp.test/authorize?state={request.state}&nonce={request.nonce}"

    async def complete(
        self, *, code: str, code_verifier: str, nonce: str, iss_parameter: str | None
    ) -> SsoClaims:
        self.completed.append({"code": code, "code_verifier": code_verifier, "nonce": nonce})
        if self.refusal:
            raise OidcRefused(self.refusal)
        assert self.claims is not None
        return self.claims


@dataclass
class World:
    fakes: Fakes
    clients: dict[SsoProvider, FakeOidcClient]
    ports: SsoPorts

    async def round_trip(self, provider: str, claims: SsoClaims, **kwargs: object) -> object:
        client = self.clients[SsoProvider(provider)]
        client.claims = claims
        started = await StartSsoSignIn(self.ports)(provider, "/here", CTX)
        state = parse_qs(urlsplit(started.authorization_url).query)["state"][0]
        args = {
            "code": "c0de",
            "state": state,
            "error": None,
            "iss": None,
            "browser_binding": started.browser_binding,
        }
        args.update(kwargs)
        return await CompleteSsoSignIn(self.ports)(provider, ctx=CTX, **args)  # type: ignore[arg-type]


@pytest.fixture
def world() -> World:
    fakes = make_fakes()
    clients = {p: FakeOidcClient() for p in (SsoProvider.GOOGLE, SsoProvider.AZURE)}
    return World(fakes, clients, SsoPorts(identity=fakes.deps, clients=clients))  # type: ignore[arg-type]


def google(email: str = "dana@example.com", verified: object = True, sub: str = "g-1") -> SsoClaims:
    return SsoClaims(issuer="https://accounts.google.com", subject=sub, email=email, email_verified=verified)


def azure(email: str = "dana@example.com", edov: object = None, oid: str = "o-1") -> SsoClaims:
    return SsoClaims(
        issuer="https://login.microsoftonline.com/t-1/v2.0",
        subject="pairwise",
        email=email,
        tenant_id="t-1",
        object_id=oid,
        xms_edov=edov,
    )


async def test_nOAuth_no_link_no_session_and_audited(world: World) -> None:
    user = seed_user(world.fakes)
    with pytest.raises(SsoCallbackFailed) as refused:
        await world.round_trip("azure", azure(email=user.email))
    assert refused.value.code == "sso_link_requires_login"
    assert world.fakes.db.rows("sso_identities") == [] and world.fakes.db.rows("sessions") == []
    [event] = world.fakes.db.audit_events("sso.link_refused")
    assert event.target_id == str(user.id) and event.details["reason"] == "email_not_vouched"


async def test_a_vouched_email_links_and_signs_in(world: World) -> None:
    user = seed_user(world.fakes)
    outcome = await world.round_trip("google", google(email=user.email))
    assert isinstance(outcome, SsoSignedIn) and outcome.return_to == "/here"
    [identity] = world.fakes.db.rows("sso_identities")
    assert identity.user_id == user.id
    [success] = world.fakes.db.audit_events("login.success")
    assert success.details == {"method": "sso:google"}


async def test_sign_up_verified_only_when_vouched(world: World) -> None:
    outcome = await world.round_trip("google", google(email="new@example.com"))
    assert isinstance(outcome, SsoSignedIn)
    created = world.fakes.db.user_by_email("new@example.com")
    assert created.is_verified and created.password_hash == NO_PASSWORD
    with pytest.raises(SsoCallbackFailed) as refused:
        await world.round_trip("azure", azure(email="other@example.com", oid="o-2"))
    assert refused.value.code == "email_not_verified"
    assert not world.fakes.db.user_by_email("other@example.com").is_verified
    assert [m.to for m in world.fakes.mailer.outbox] == ["other@example.com"]


async def test_a_totp_account_gets_the_mfa_step(world: World) -> None:
    user = seed_user(world.fakes)
    now = world.fakes.clock.now()
    world.fakes.db.put(TOTP, user.id, TotpCredential(user.id, b"x", now, confirmed_at=now))
    outcome = await world.round_trip("google", google(email=user.email))
    assert isinstance(outcome, SsoMfaStep) and outcome.mfa_token
    assert world.fakes.db.rows("sessions") == []


async def test_the_state_is_bound_to_the_browser_and_used_once(world: World) -> None:
    client = world.clients[SsoProvider.GOOGLE]
    client.claims = google()
    started = await StartSsoSignIn(world.ports)("google", None, CTX)
    state = parse_qs(urlsplit(started.authorization_url).query)["state"][0]
    complete = CompleteSsoSignIn(world.ports)
    common = {"code": "c", "state": state, "error": None, "iss": None}
    with pytest.raises(SsoCallbackFailed, match="did not succeed"):
        await complete("google", ctx=CTX, browser_binding="someone-else", **common)  # type: ignore[arg-type]
    with pytest.raises(SsoCallbackFailed):
        await complete("google", ctx=CTX, browser_binding=started.browser_binding, **common)  # type: ignore[arg-type]
    assert client.completed == []  # no code ever reached the provider


async def test_two_callbacks_at_once_claim_the_state_once(world: World) -> None:
    client = world.clients[SsoProvider.GOOGLE]
    client.claims = google()
    started = await StartSsoSignIn(world.ports)("google", None, CTX)
    state = parse_qs(urlsplit(started.authorization_url).query)["state"][0]
    complete = CompleteSsoSignIn(world.ports)

    async def once() -> object:
        try:
            return await complete(
                "google",
                code="c",
                state=state,
                error=None,
                iss=None,
                browser_binding=started.browser_binding,
                ctx=CTX,
            )
        except SsoCallbackFailed as failed:
            return failed.code

    results = await asyncio.gather(once(), once())
    assert sorted(type(r).__name__ for r in results) == ["SsoSignedIn", "str"]


async def test_a_refused_id_token_is_audited_and_signs_nobody_in(world: World) -> None:
    world.clients[SsoProvider.GOOGLE].refusal = "invalid_claim:nonce"
    with pytest.raises(SsoCallbackFailed) as refused:
        await world.round_trip("google", google())
    assert refused.value.code == "sso_failed"
    assert world.fakes.db.audit_events("sso.failure")[-1].details["reason"] == "invalid_claim:nonce"


async def test_unconfigured_providers_and_bad_return_to(world: World) -> None:
    with pytest.raises(ProviderNotConfigured):
        await StartSsoSignIn(world.ports)("oidc", None, CTX)
    with pytest.raises(InvalidInput) as bad:
        await StartSsoSignIn(world.ports)("google", "//evil.example", CTX)
    assert bad.value.code == "invalid_return_to"
    assert world.clients[SsoProvider.GOOGLE].requests == []


def principal_of(world: World, user_id: uuid.UUID, recent: bool = True) -> Principal:
    now = world.fakes.clock.now()
    return Principal(user_id, uuid.uuid4(), uuid.uuid4(), "user", now if recent else now - timedelta(hours=1))


async def test_unlinking_the_last_method_of_an_sso_only_account_is_refused(world: World) -> None:
    await world.round_trip("google", google(email="solo@example.com"))
    user = world.fakes.db.user_by_email("solo@example.com")
    principal = principal_of(world, user.id)
    [identity] = await ListIdentities(world.ports)(principal)
    with pytest.raises(Conflict) as refused:
        await UnlinkIdentity(world.ports)(principal, identity.id, CTX)
    assert refused.value.code == "last_sign_in_method"
    with pytest.raises(ReauthRequired):
        await UnlinkIdentity(world.ports)(principal_of(world, user.id, recent=False), identity.id, CTX)
    with pytest.raises(NotFound):
        await UnlinkIdentity(world.ports)(principal_of(world, uuid.uuid4()), identity.id, CTX)
    mutate(world.fakes, USERS, user.id, lambda u: setattr(u, "password_hash", "fake$p1$set-by-reset"))
    await UnlinkIdentity(world.ports)(principal, identity.id, CTX)
    assert await ListIdentities(world.ports)(principal) == []


async def test_link_mode_links_to_the_signed_in_account_whatever_the_email(world: World) -> None:
    user = seed_user(world.fakes)
    signed_in = await Login(world.fakes.deps)(user.email, "a long enough pass phrase", CTX)
    assert isinstance(signed_in, LoginResult)
    principal = Principal(
        user.id, signed_in.session.id, signed_in.session.org_id, "user", signed_in.session.auth_time
    )
    complete = CompleteSsoSignIn(world.ports)

    async def link(claims: SsoClaims) -> object:
        started = await StartIdentityLink(world.ports)(principal, "azure", None, CTX)
        state = parse_qs(urlsplit(started.authorization_url).query)["state"][0]
        world.clients[SsoProvider.AZURE].claims = claims
        return await complete(
            "azure",
            code="c",
            state=state,
            error=None,
            iss=None,
            browser_binding=started.browser_binding,
            ctx=CTX,
        )

    # another address, not vouched: a sign-in would refuse it, the signed-in owner links it
    outcome = await link(azure(email="elsewhere@example.com"))
    assert isinstance(outcome, SsoLinked) and outcome.return_to == "/settings/identities"
    [identity] = await ListIdentities(world.ports)(principal)
    assert identity.user_id == user.id and identity.email == "elsewhere@example.com"
    assert world.fakes.db.audit_events("sso.identity_linked")[-1].details["via"] == "link"
    # a second account cannot take the same identity
    other = seed_user(world.fakes, email="other@example.com")
    theirs = await Login(world.fakes.deps)(other.email, "a long enough pass phrase", CTX)
    assert isinstance(theirs, LoginResult)
    principal = Principal(
        other.id, theirs.session.id, theirs.session.org_id, "user", theirs.session.auth_time
    )
    with pytest.raises(SsoCallbackFailed) as refused:
        await link(azure(email="elsewhere@example.com"))
    assert refused.value.code == "identity_in_use"
    # and once the starting session has ended, the link is refused
    await Logout(world.fakes.deps)(principal, None, CTX)
    with pytest.raises(SsoCallbackFailed) as ended:
        await link(azure(email="third@example.com", oid="o-3"))
    assert ended.value.code == "invalid_state"
    assert len(world.fakes.db.rows("sso_identities")) == 1


async def test_jwks_refetch_for_unknown_kids_is_rate_limited() -> None:
    fetched: list[int] = []
    now = [0.0]

    key = RSAKey.generate_key(2048, {"kid": "k1"}, private=False)

    async def fetch() -> dict[str, object]:
        fetched.append(1)
        return {"keys": [key.as_dict()]}

    cache = JwksCache(fetch, min_refetch_seconds=60, monotonic=lambda: now[0])
    await cache.keys()
    await cache.keys()
    assert len(fetched) == 1  # cached
    assert await cache.refetch_for_unknown_kid() is not None  # a rotation: refetched at once
    assert await cache.refetch_for_unknown_kid() is None  # a flood of made-up kids: not again
    assert len(fetched) == 2
    now[0] = 61.0
    assert await cache.refetch_for_unknown_kid() is not None
    assert len(fetched) == 3
    assert cache.has_kid("k1")


async def test_an_unusable_jwks_is_the_provider_being_unavailable() -> None:
    async def fetch() -> dict[str, object]:
        return {"keys": []}

    with pytest.raises(OidcUnavailable):
        await JwksCache(fetch).keys()


async def test_a_vouched_email_claims_an_unverified_account_and_drops_its_password(world: World) -> None:
    """Pre-account hijacking: someone registered the address with their own password and never
    verified it; the provider's proof of the address wins and that password is gone."""
    squatter = seed_user(world.fakes, verified=False)
    outcome = await world.round_trip("google", google(email=squatter.email))
    assert isinstance(outcome, SsoSignedIn)
    claimed = world.fakes.db.user_by_email(squatter.email)
    assert claimed.is_verified and claimed.password_hash == NO_PASSWORD
    assert world.fakes.db.audit_events("sso.unverified_account_claimed")
