"""Signing in with Google, Azure AD or a generic OpenID provider: the start, and the browser's
return (which also finishes link mode, started from the account settings).

The return carries no bearer token: the single-use state record, bound to the browser that
started the flow, stands for the request. What the provider says is believed only after the
OIDC adapter validated the id_token, and an existing account is taken over only by the linking
rule (`domain.sso.decide_sign_in`)."""

import hmac
import secrets
import uuid
from dataclasses import dataclass

from application.errors import Conflict, Forbidden, InvalidInput, RateLimited
from application.identity import RequestContext
from application.ports.oidc import OidcClient, OidcRefused, OidcUnavailable
from application.ports.unit_of_work import UnitOfWork
from application.sso_ports import (
    SsoCallbackFailed,
    SsoPorts,
    SsoStart,
    begin_flow,
    checked_return_to,
    configured_client,
)
from application.use_cases.accounts import issue_one_time_token, send_mail, validated_email, verification_mail
from application.use_cases.login import active_org_for, start_session
from application.use_cases.mfa_challenge import begin_mfa_challenge
from application.use_cases.session_tokens import enforce_limits, tiers
from domain.one_time_tokens import TokenPurpose
from domain.orgs import Membership, Organisation, OrgRole
from domain.permissions import SYSTEM_ROLE_IDS, SystemRole
from domain.sessions import token_digest
from domain.sso import (
    NO_PASSWORD,
    IdentityKey,
    LinkDecision,
    LinkOutcome,
    SsoClaims,
    SsoIdentity,
    SsoProvider,
    SsoPurpose,
    SsoState,
    decide_sign_in,
    identity_key,
)
from domain.text_rules import has_control_characters
from domain.users import User, normalise_email

_DISPLAY_NAME_MAX = 200


@dataclass(frozen=True)
class SsoSignedIn:
    refresh_token: str
    return_to: str


@dataclass(frozen=True)
class SsoMfaStep:
    """The account has TOTP: the same `mfa_token` step as a password login (the SPA finishes it)."""

    mfa_token: str
    return_to: str


@dataclass(frozen=True)
class SsoLinked:
    return_to: str


SsoOutcome = SsoSignedIn | SsoMfaStep | SsoLinked


@dataclass
class StartSsoSignIn:
    ports: SsoPorts

    async def __call__(self, provider_name: str, return_to: str | None, ctx: RequestContext) -> SsoStart:
        provider, client = configured_client(self.ports, provider_name)
        path = checked_return_to(return_to)
        deps = self.ports.identity
        await enforce_limits(deps, ctx, tiers("sso-start-ip", ctx.ip, deps.policy.login_per_ip))
        return await begin_flow(self.ports, provider, client, SsoPurpose.LOGIN, path)


@dataclass
class CompleteSsoSignIn:
    ports: SsoPorts

    async def __call__(
        self,
        provider_name: str,
        *,
        code: str | None,
        state: str | None,
        error: str | None,
        iss: str | None,
        browser_binding: str | None,
        ctx: RequestContext,
    ) -> SsoOutcome:
        provider, client = configured_client(self.ports, provider_name)
        deps = self.ports.identity
        try:
            await enforce_limits(deps, ctx, tiers("login-ip", ctx.ip, deps.policy.login_per_ip))
        except RateLimited:
            raise SsoCallbackFailed(
                "Too many sign-in attempts; try again later.", code="rate_limited"
            ) from None
        pending = await self._claim(provider, state, browser_binding, ctx)
        if error is not None or not code:
            raise await self._failure(ctx, provider, "access_denied", "provider_error")
        claims = await self._validated(client, provider, pending, code, iss, ctx)
        try:
            key = identity_key(provider, claims)
        except ValueError:
            raise await self._failure(ctx, provider, "sso_failed", "no_stable_subject") from None
        if pending.purpose is SsoPurpose.LINK:
            return await self._link(pending, provider, key, claims, ctx)
        return await self._sign_in(pending, provider, key, claims, ctx)

    async def _failure(
        self,
        ctx: RequestContext,
        provider: SsoProvider,
        code: str,
        reason: str,
        user: uuid.UUID | None = None,
    ) -> SsoCallbackFailed:
        async with self.ports.identity.uow() as uow:
            await uow.audit.append(
                ctx.event(
                    "sso.failure",
                    target_type="user" if user else None,
                    target_id=user,
                    provider=str(provider),
                    reason=reason,
                )
            )
            await uow.commit()
        return SsoCallbackFailed("Signing in with the provider did not succeed.", code=code)

    async def _claim(
        self, provider: SsoProvider, state: str | None, browser_binding: str | None, ctx: RequestContext
    ) -> SsoState:
        if not state or len(state) > 128:
            raise await self._failure(ctx, provider, "invalid_state", "no_state")
        now = self.ports.identity.clock.now()
        async with self.ports.identity.uow() as uow:
            pending = await uow.sso.consume_state(token_digest(state), now)
            await uow.commit()
        if pending is None:
            raise await self._failure(ctx, provider, "invalid_state", "unknown_or_used_state")
        if pending.is_expired(now):
            raise await self._failure(ctx, provider, "invalid_state", "expired_state")
        if pending.provider is not provider:
            raise await self._failure(ctx, provider, "invalid_state", "state_of_another_provider")
        # Login CSRF: a callback link handed to another browser lacks the cookie set at the start.
        presented = token_digest(browser_binding or "")
        if not browser_binding or not hmac.compare_digest(presented, pending.browser_hash):
            raise await self._failure(ctx, provider, "invalid_state", "browser_mismatch")
        return pending

    async def _validated(
        self,
        client: OidcClient,
        provider: SsoProvider,
        pending: SsoState,
        code: str,
        iss: str | None,
        ctx: RequestContext,
    ) -> SsoClaims:
        try:
            return await client.complete(
                code=code, code_verifier=pending.code_verifier, nonce=pending.nonce, iss_parameter=iss
            )
        except OidcRefused as refused:
            raise await self._failure(ctx, provider, "sso_failed", refused.reason[:100]) from None
        except OidcUnavailable:
            raise await self._failure(ctx, provider, "provider_unavailable", "provider_unavailable") from None

    # --- link mode: the signed-in account, whatever the email ----------------------------------

    async def _link(
        self,
        pending: SsoState,
        provider: SsoProvider,
        key: IdentityKey,
        claims: SsoClaims,
        ctx: RequestContext,
    ) -> SsoLinked:
        deps = self.ports.identity
        now = deps.clock.now()
        refused: tuple[str, uuid.UUID | None] | None = None
        try:
            async with deps.uow() as uow:
                session = await uow.sessions.get(pending.session_id) if pending.session_id else None
                user = await uow.users.get(pending.user_id) if pending.user_id else None
                existing = await uow.sso.identity_by_key(key)
                if (
                    session is None
                    or user is None
                    or session.user_id != user.id
                    or not session.is_live(now)
                    or user.is_suspended
                ):
                    refused = ("link_session_ended", None)
                elif existing is not None and existing.user_id != user.id:
                    refused = ("identity_in_use", user.id)
                elif existing is None:
                    await self._add_identity(uow, user, provider, key, claims, ctx, via="link")
                    await uow.commit()
        except Conflict:
            refused = ("identity_in_use", pending.user_id)
        if refused is not None:
            code = "invalid_state" if refused[0] == "link_session_ended" else refused[0]
            raise await self._failure(ctx, provider, code, refused[0], refused[1])
        return SsoLinked(pending.return_to)

    async def _add_identity(
        self,
        uow: UnitOfWork,
        user: User,
        provider: SsoProvider,
        key: IdentityKey,
        claims: SsoClaims,
        ctx: RequestContext,
        *,
        via: str,
    ) -> None:
        identity = SsoIdentity(
            id=uuid.uuid4(),
            user_id=user.id,
            provider=provider,
            issuer=key.issuer,
            subject=key.subject,
            email=(claims.email or "")[:320] or None,
            linked_at=self.ports.identity.clock.now(),
        )
        await uow.sso.add_identity(identity)
        await uow.audit.append(
            ctx.event(
                "sso.identity_linked",
                actor=user.id,
                target_type="sso_identity",
                target_id=identity.id,
                provider=str(provider),
                via=via,
            )
        )

    # --- sign-in mode --------------------------------------------------------------------------

    async def _decide(
        self, uow: UnitOfWork, provider: SsoProvider, key: IdentityKey, claims: SsoClaims
    ) -> tuple[LinkDecision, SsoIdentity | None, str | None]:
        linked = await uow.sso.identity_by_key(key)
        email = normalise_email(claims.email) if claims.email else None
        if email is not None and has_control_characters(email):
            email = None  # no account has one; PostgreSQL refuses a NUL
        found = await uow.users.get_by_email(email) if email else None
        decision = decide_sign_in(
            provider, claims, linked.user_id if linked else None, found.id if found else None
        )
        return decision, linked, email

    async def _sign_in(
        self,
        pending: SsoState,
        provider: SsoProvider,
        key: IdentityKey,
        claims: SsoClaims,
        ctx: RequestContext,
    ) -> SsoSignedIn | SsoMfaStep:
        deps = self.ports.identity
        async with deps.uow(autocommit=True) as uow:
            first, _, _ = await self._decide(uow, provider, key, claims)
        pepper: str | None = None
        if first.outcome is LinkOutcome.CREATE:
            # A new SSO-only account has no password; its marker still needs a pepper version
            # the hasher knows (a password login tried on it then fails like any wrong one).
            _, pepper = await deps.hasher.hash(secrets.token_urlsafe(32))
        verification: tuple[str, str] | None = None
        try:
            async with deps.uow() as uow:
                decision, linked, email = await self._decide(uow, provider, key, claims)
                if decision.outcome is LinkOutcome.REQUIRE_LOGIN:
                    # The nOAuth case: an address the provider does not vouch for names an
                    # existing account. No link, no sign-in; the owner links from the settings.
                    await uow.audit.append(
                        ctx.event(
                            "sso.link_refused",
                            target_type="user",
                            target_id=decision.user_id,
                            provider=str(provider),
                            reason="email_not_vouched",
                        )
                    )
                    await uow.commit()
                    raise SsoCallbackFailed(
                        "An account with this email exists: sign in with its password, then link "
                        "this provider from your account settings.",
                        code="sso_link_requires_login",
                    )
                if decision.outcome is LinkOutcome.CREATE:
                    if pepper is None:
                        raise SsoCallbackFailed("Try signing in again.", code="try_again")
                    user, verification = await self._create(
                        uow, provider, key, claims, email, decision, pepper, ctx
                    )
                else:
                    assert decision.user_id is not None
                    found = await uow.users.get(decision.user_id)
                    if found is None:
                        raise SsoCallbackFailed("Try signing in again.", code="try_again")
                    user = found
                    if decision.outcome is LinkOutcome.LINK_AND_SIGN_IN:
                        if not user.is_verified:
                            user = await self._claim_unverified(uow, user, provider, ctx)
                        await self._add_identity(uow, user, provider, key, claims, ctx, via="verified_email")
                    elif linked is not None:
                        await uow.sso.touch_identity(linked.id, deps.clock.now())
                if verification is not None:
                    await uow.commit()  # the account stands; it signs in once its address is proven
                else:
                    return await self._open_session(uow, user, provider, claims, pending, ctx)
        except Conflict:
            # A concurrent sign-in created or linked the same account first.
            raise SsoCallbackFailed("Try signing in again.", code="try_again") from None
        await send_mail(deps, verification_mail(deps, verification[0], verification[1]))
        raise SsoCallbackFailed("Verify your email address before signing in.", code="email_not_verified")

    async def _claim_unverified(
        self, uow: UnitOfWork, user: User, provider: SsoProvider, ctx: RequestContext
    ) -> User:
        """Pre-account hijacking: anyone can register someone else's address with a password of
        their own and wait. The provider proves the address now, the password never proved
        anything: it goes (the owner sets one through the reset flow) and the address counts as
        verified."""
        now = self.ports.identity.clock.now()
        user.password_hash = NO_PASSWORD
        user.email_verified_at = now
        user.updated_at = now
        await uow.users.update(user)
        await uow.one_time_tokens.invalidate_for_user(user.id, TokenPurpose.VERIFY_EMAIL, now)
        await uow.one_time_tokens.invalidate_for_user(user.id, TokenPurpose.RESET_PASSWORD, now)
        await uow.audit.append(
            ctx.event(
                "sso.unverified_account_claimed",
                actor=user.id,
                target_type="user",
                target_id=user.id,
                provider=str(provider),
            )
        )
        return user

    async def _create(
        self,
        uow: UnitOfWork,
        provider: SsoProvider,
        key: IdentityKey,
        claims: SsoClaims,
        email: str | None,
        decision: LinkDecision,
        pepper: str,
        ctx: RequestContext,
    ) -> tuple[User, tuple[str, str] | None]:
        """A new account with its personal organisation, as at registration. Its address counts
        as verified only when the provider vouches for it; otherwise a verification mail."""
        deps = self.ports.identity
        if email is None:
            raise SsoCallbackFailed("The provider did not tell us your email address.", code="email_required")
        try:
            address = validated_email(email)
        except InvalidInput:
            raise SsoCallbackFailed(
                "The provider's email address is not usable.", code="email_required"
            ) from None
        now = deps.clock.now()
        name = (claims.name or "").strip()
        if not name or has_control_characters(name):
            name = address.partition("@")[0]
        name = name[:_DISPLAY_NAME_MAX]
        org = Organisation(
            id=uuid.uuid4(), name=f"{name}'s organisation"[:200], created_at=now, personal=True
        )
        user = User(
            id=uuid.uuid4(),
            email=address,
            display_name=name,
            password_hash=NO_PASSWORD,
            pepper_version=pepper,
            created_at=now,
            default_org_id=org.id,
            email_verified_at=now if decision.email_verified else None,
        )
        await uow.orgs.add(org)
        await uow.users.add(user)
        await uow.orgs.add_membership(Membership(org.id, user.id, OrgRole.ADMINISTRATOR, now))
        await uow.authz.assign_member_role(org.id, user.id, SYSTEM_ROLE_IDS[SystemRole.ADMINISTRATOR], now)
        await uow.audit.append(
            ctx.event(
                "user.registered",
                actor=user.id,
                org=org.id,
                target_type="user",
                target_id=user.id,
                method=f"sso:{provider}",
            )
        )
        if decision.email_verified:
            await self._add_identity(uow, user, provider, key, claims, ctx, via="sign_up")
            return user, None
        # An address the provider does not vouch for: the account waits for its mailed link, and
        # the identity is NOT linked. Linked now, it would outlive the proof: whoever typed the
        # victim's address into their own tenant would sign in to the victim's account as soon
        # as the victim verified it (by that mail, a reset, or another provider). Once verified,
        # the owner sets a password through the reset flow and links the provider from settings.
        raw = await issue_one_time_token(deps, uow, user.id, TokenPurpose.VERIFY_EMAIL)
        return user, (address, raw)

    async def _open_session(
        self,
        uow: UnitOfWork,
        user: User,
        provider: SsoProvider,
        claims: SsoClaims,
        pending: SsoState,
        ctx: RequestContext,
    ) -> SsoSignedIn | SsoMfaStep:
        """Exactly as a password login from here: the same refusals, the same second factor,
        the same session."""
        deps = self.ports.identity
        method = f"sso:{provider}"
        refusal: tuple[str, str] | None = None
        if user.is_paused:
            refusal = ("account_paused", "This account is paused by the platform's administrators.")
        elif user.is_suspended:
            refusal = ("account_suspended", "This account is suspended.")
        elif not user.is_verified:
            refusal = ("email_not_verified", "Verify your email address before signing in.")
        if refusal is not None:
            await self._login_failure(uow, ctx, user, refusal[0], method)
            raise SsoCallbackFailed(refusal[1], code=refusal[0])
        try:
            org = await active_org_for(uow, user)
        except Forbidden as refused:
            await self._login_failure(uow, ctx, user, refused.code, method)
            raise SsoCallbackFailed(refused.detail, code=refused.code) from None
        totp = await uow.mfa.get_totp(user.id)
        # The session can switch into any of the user's orgs without another factor, so the
        # provider's MFA stands in for ours only when every active org of theirs trusts it: one
        # org's setting must not waive another's second factor.
        active = [o for _, o in await uow.orgs.memberships_of(user.id) if not o.is_disabled]
        provider_mfa_trusted = claims.provider_mfa and all(o.trust_sso_mfa for o in active)
        if totp is not None and totp.enabled and not provider_mfa_trusted:
            challenge = await begin_mfa_challenge(deps, uow, user, ctx)
            await uow.commit()
            return SsoMfaStep(challenge.mfa_token, pending.return_to)
        session, raw = await start_session(deps, uow, user, org, ctx)
        event = ctx.event(
            "login.success",
            actor=user.id,
            org=org.id,
            target_type="session",
            target_id=session.id,
            method=method,
        )
        if totp is not None and totp.enabled:  # the provider's MFA stood in for ours (org setting)
            event.details["mfa"] = "provider_amr"
        await uow.audit.append(event)
        await uow.commit()
        return SsoSignedIn(raw, pending.return_to)

    async def _login_failure(
        self, uow: UnitOfWork, ctx: RequestContext, user: User, reason: str, method: str
    ) -> None:
        await uow.audit.append(
            ctx.event("login.failure", target_type="user", target_id=user.id, reason=reason, method=method)
        )
        await uow.commit()
