"""Connecting a broker account (cTrader's OAuth authorization-code flow) and managing the
connection from the public API. The public API seals tokens the moment it receives them and can
never open them again: only the credential vault can."""

import hmac
import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta

from application.authorization import PermissionResolver, same_org
from application.errors import ApplicationError, Forbidden, InvalidInput, NotFound
from application.identity import RequestContext
from application.org_authority import OrgActor, authorize
from application.ports.clock import Clock
from application.ports.credential_sealing import CredentialSealer, broker_tokens_context
from application.ports.ctrader import (
    BrokerAccount,
    BrokerRefused,
    BrokerTokens,
    BrokerUnavailable,
    CtraderAccounts,
    CtraderOAuth,
)
from application.ports.unit_of_work import UnitOfWorkFactory
from application.step_up import require_recent_auth
from application.text_input import validated_text
from application.use_cases.sessions import Principal
from domain.brokers import (
    LABEL_MAX,
    OAUTH_STATE_TTL,
    BrokerConnection,
    ConnectedAccount,
    ConnectionKind,
    ConnectionStatus,
    CtraderScope,
    OAuthState,
    default_label,
)
from domain.sessions import token_digest

CREATE, READ, UPDATE, DELETE = (f"broker_connections:{a}" for a in ("create", "read", "update", "delete"))


class ProviderNotConfigured(NotFound):
    """This broker is not configured on this server."""

    code = "provider_not_configured"


class CallbackFailed(ApplicationError):
    """The browser came back from the broker, but no connection was made; `code` says why
    (access_denied, invalid_state, exchange_failed, broker_unavailable)."""


@dataclass(frozen=True)
class BrokerPolicy:
    stepup_window: timedelta = timedelta(minutes=10)
    revoke_at_broker_url: str = "https://id.ctrader.com/my/settings/openapi/grantedaccesses"


@dataclass
class BrokerPorts:
    """What the public API's broker use cases need; the cTrader parts are None when unconfigured."""

    uow: UnitOfWorkFactory
    resolver: PermissionResolver
    clock: Clock
    oauth: CtraderOAuth | None
    accounts: CtraderAccounts | None
    sealer: CredentialSealer | None
    policy: BrokerPolicy


def _configured(ports: BrokerPorts) -> tuple[CtraderOAuth, CtraderAccounts, CredentialSealer]:
    if ports.oauth is None or ports.accounts is None or ports.sealer is None:
        raise ProviderNotConfigured("cTrader is not configured on this server.")
    return ports.oauth, ports.accounts, ports.sealer


def connected(accounts: list[BrokerAccount]) -> tuple[ConnectedAccount, ...]:
    return tuple(
        ConnectedAccount(a.ctid_trader_account_id, a.is_live, a.trader_login, a.broker[:100])
        for a in accounts
    )


def _scope(text: str) -> CtraderScope:
    try:
        return CtraderScope(text)
    except ValueError:
        raise InvalidInput("scope must be `trading` or `accounts`.", field="scope") from None


@dataclass(frozen=True)
class AuthorizationStart:
    authorization_url: str
    browser_binding: str  # goes into a cookie of the browser that started the flow


@dataclass
class StartBrokerAuthorization:
    ports: BrokerPorts

    async def __call__(
        self,
        principal: Principal,
        org_id: uuid.UUID,
        scope: str,
        connection_id: uuid.UUID | None,
        ctx: RequestContext,
    ) -> AuthorizationStart:
        oauth, _, _ = _configured(self.ports)
        chosen = _scope(scope)
        now = self.ports.clock.now()
        require_recent_auth(principal.auth_time, now, self.ports.policy.stepup_window)
        state = secrets.token_urlsafe(32)  # 256 random bits
        binding = secrets.token_urlsafe(32)
        async with self.ports.uow() as uow:
            actor = await authorize(uow, principal, org_id, CREATE)
            if connection_id is not None:
                existing = await uow.broker_connections.get(org_id, connection_id)
                if existing is None or existing.status is ConnectionStatus.REVOKED:
                    raise NotFound("No such broker connection.")
                _may_reconnect(actor, existing)
            await uow.broker_connections.add_state(
                OAuthState(
                    state_hash=token_digest(state),
                    user_id=principal.user_id,
                    org_id=org_id,
                    session_id=principal.session_id,
                    scope=chosen,
                    connection_id=connection_id,
                    browser_hash=token_digest(binding),
                    created_at=now,
                    expires_at=now + OAUTH_STATE_TTL,
                )
            )
            await uow.audit.append(
                ctx.event(
                    "broker_connection.authorization_started",
                    actor=principal.user_id,
                    org=org_id,
                    target_type="broker_connection",
                    target_id=connection_id,
                    scope=str(chosen),
                )
            )
            await uow.commit()
        return AuthorizationStart(oauth.authorization_url(state=state, scope=str(chosen)), binding)


def _may_reconnect(actor: OrgActor, existing: BrokerConnection) -> None:
    """Re-authorising puts new tokens (possibly of other accounts) behind an id workers trade
    on: only its owner, or an administrator, holding `broker_connections:update` too."""
    actor.require(UPDATE)
    if existing.created_by != actor.user_id and not actor.is_administrator:
        raise Forbidden("Only the connection's owner or an administrator may reconnect it.", code="not_owner")


@dataclass
class CompleteBrokerAuthorization:
    """The browser's return from the broker. It carries no bearer token: the `state` record
    stands for the user, and the session it was bound to must still be live."""

    ports: BrokerPorts

    async def __call__(
        self,
        code: str | None,
        state: str | None,
        error: str | None,
        browser_binding: str | None,
        ctx: RequestContext,
    ) -> BrokerConnection:
        oauth, lister, sealer = _configured(self.ports)
        pending = await self._claim(state, browser_binding)
        principal = await self._still_allowed(pending)
        if error is not None or not code:
            raise CallbackFailed("The broker did not grant access.", code="access_denied")
        try:
            tokens = await oauth.exchange_code(code)
            accounts = connected(await lister.list_accounts(tokens.access_token))
        except BrokerRefused:
            raise CallbackFailed(
                "The broker refused the authorisation code.", code="exchange_failed"
            ) from None
        except BrokerUnavailable:
            raise CallbackFailed("The broker did not answer.", code="broker_unavailable") from None
        return await self._store(pending, principal, sealer, tokens, accounts, ctx)

    async def _store(
        self,
        pending: OAuthState,
        principal: Principal,
        sealer: CredentialSealer,
        tokens: BrokerTokens,
        accounts: tuple[ConnectedAccount, ...],
        ctx: RequestContext,
    ) -> BrokerConnection:
        """Authorized again under the org lock: the tokens land only where the user may still put them."""
        now = self.ports.clock.now()
        expires = now + timedelta(seconds=max(0, tokens.expires_in))
        try:
            async with self.ports.uow() as uow:
                actor = await authorize(uow, principal, pending.org_id, CREATE)
                if pending.connection_id is not None:
                    existing = await uow.broker_connections.get(pending.org_id, pending.connection_id)
                    if existing is None:
                        raise CallbackFailed("That connection no longer exists.", code="invalid_state")
                    _may_reconnect(actor, existing)
                    connection_id = pending.connection_id
                    sealed = sealer.seal(
                        tokens.plaintext(), broker_tokens_context(connection_id, pending.org_id)
                    )
                    replaced = await uow.broker_connections.replace_tokens(
                        pending.org_id,
                        connection_id,
                        sealed,
                        scope=pending.scope,
                        accounts=accounts,
                        access_expires_at=expires,
                        now=now,
                    )
                    if not replaced:
                        raise CallbackFailed("That connection no longer exists.", code="invalid_state")
                    action = "broker_connection.reauthorized"
                else:
                    connection_id = uuid.uuid4()
                    sealed = sealer.seal(
                        tokens.plaintext(), broker_tokens_context(connection_id, pending.org_id)
                    )
                    await uow.broker_connections.add(
                        BrokerConnection(
                            id=connection_id,
                            org_id=pending.org_id,
                            kind=ConnectionKind.CTRADER,
                            label=default_label(accounts),
                            status=ConnectionStatus.ACTIVE,
                            scope=pending.scope,
                            accounts=accounts,
                            created_by=pending.user_id,
                            created_at=now,
                            access_expires_at=expires,
                            last_refreshed_at=now,
                            sealed=sealed,
                        )
                    )
                    action = "broker_connection.created"
                await uow.audit.append(
                    ctx.event(
                        action,
                        actor=pending.user_id,
                        org=pending.org_id,
                        target_type="broker_connection",
                        target_id=connection_id,
                        scope=str(pending.scope),
                        accounts=len(accounts),
                    )
                )
                stored = await uow.broker_connections.get(pending.org_id, connection_id)
                await uow.commit()
        except (Forbidden, NotFound):
            raise CallbackFailed("You may no longer connect a broker here.", code="access_denied") from None
        assert stored is not None
        return stored

    async def _claim(self, state: str | None, browser_binding: str | None) -> OAuthState:
        invalid = CallbackFailed("This sign-in link is not valid any more.", code="invalid_state")
        if not state or len(state) > 128:
            raise invalid
        now = self.ports.clock.now()
        async with self.ports.uow() as uow:
            pending = await uow.broker_connections.consume_state(token_digest(state), now)
            await uow.commit()
        if pending is None or pending.is_expired(now):
            raise invalid
        presented = token_digest(browser_binding or "")
        if not browser_binding or not hmac.compare_digest(presented, pending.browser_hash):
            raise CallbackFailed("This connection was started in another browser.", code="invalid_state")
        return pending

    async def _still_allowed(self, pending: OAuthState) -> Principal:
        """The session that started the flow must still be live, its user active."""
        invalid = CallbackFailed("The session that started this has ended.", code="invalid_state")
        now = self.ports.clock.now()
        async with self.ports.uow() as uow:
            session = await uow.sessions.get(pending.session_id)
            user = await uow.users.get(pending.user_id)
            org = await uow.orgs.get(pending.org_id)
        if session is None or session.user_id != pending.user_id or not session.is_live(now):
            raise invalid
        if user is None or user.is_suspended or org is None or org.is_disabled:
            raise invalid
        principal = Principal(
            user_id=user.id,
            session_id=session.id,
            org_id=pending.org_id,
            platform_role=str(user.platform_role),
            auth_time=session.auth_time,
        )
        # Checked before the code is spent at the broker (and again when storing).
        try:
            async with self.ports.uow() as uow:
                actor = await authorize(uow, principal, pending.org_id, CREATE)
                if pending.connection_id is not None:
                    existing = await uow.broker_connections.get(pending.org_id, pending.connection_id)
                    if existing is None or existing.status is ConnectionStatus.REVOKED:
                        raise invalid
                    _may_reconnect(actor, existing)
        except (Forbidden, NotFound):
            raise CallbackFailed("You may no longer connect a broker here.", code="access_denied") from None
        return principal


@dataclass
class ListBrokerConnections:
    ports: BrokerPorts

    async def __call__(self, principal: Principal, org_id: uuid.UUID) -> list[BrokerConnection]:
        same_org(principal, org_id)
        await self.ports.resolver.require(principal, READ)
        async with self.ports.uow() as uow:
            found = await uow.broker_connections.in_org(org_id)
        return [replace(c, sealed=None) for c in found]


@dataclass
class GetBrokerConnection:
    ports: BrokerPorts

    async def __call__(
        self, principal: Principal, org_id: uuid.UUID, connection_id: uuid.UUID
    ) -> BrokerConnection:
        same_org(principal, org_id)
        await self.ports.resolver.require(principal, READ)
        async with self.ports.uow() as uow:
            found = await uow.broker_connections.get(org_id, connection_id)
        if found is None:
            raise NotFound("No such broker connection.")
        return replace(found, sealed=None)


@dataclass
class RenameBrokerConnection:
    ports: BrokerPorts

    async def __call__(
        self,
        principal: Principal,
        org_id: uuid.UUID,
        connection_id: uuid.UUID,
        label: str,
        ctx: RequestContext,
    ) -> BrokerConnection:
        label = validated_text(label, "label", "The label", LABEL_MAX)
        async with self.ports.uow() as uow:
            await authorize(uow, principal, org_id, UPDATE)
            if not await uow.broker_connections.rename(org_id, connection_id, label, self.ports.clock.now()):
                raise NotFound("No such broker connection.")
            await uow.audit.append(
                ctx.event(
                    "broker_connection.renamed",
                    actor=principal.user_id,
                    org=org_id,
                    target_type="broker_connection",
                    target_id=connection_id,
                )
            )
            found = await uow.broker_connections.get(org_id, connection_id)
            await uow.commit()
        assert found is not None
        return replace(found, sealed=None)


@dataclass
class DeleteBrokerConnection:
    """Destroys the sealed tokens; the row stays, revoked, so the audit trail still resolves."""

    ports: BrokerPorts

    async def __call__(
        self, principal: Principal, org_id: uuid.UUID, connection_id: uuid.UUID, ctx: RequestContext
    ) -> str:
        now = self.ports.clock.now()
        require_recent_auth(principal.auth_time, now, self.ports.policy.stepup_window)
        async with self.ports.uow() as uow:
            await authorize(uow, principal, org_id, DELETE)
            if await uow.broker_connections.get(org_id, connection_id) is None:
                raise NotFound("No such broker connection.")
            if await uow.broker_connections.revoke(org_id, connection_id, now):
                await uow.audit.append(
                    ctx.event(
                        "broker_connection.revoked",
                        actor=principal.user_id,
                        org=org_id,
                        target_type="broker_connection",
                        target_id=connection_id,
                    )
                )
            await uow.commit()
        return self.ports.policy.revoke_at_broker_url


__all__ = [
    "BrokerPolicy",
    "BrokerPorts",
    "CallbackFailed",
    "CompleteBrokerAuthorization",
    "DeleteBrokerConnection",
    "GetBrokerConnection",
    "ListBrokerConnections",
    "ProviderNotConfigured",
    "RenameBrokerConnection",
    "StartBrokerAuthorization",
    "connected",
]
