"""The credential vault: hands a broker access token to an internal worker at the moment of use,
refreshing it first when it is due, and re-seals everything when the vault's key rotates.

A refresh is a claim committed in the database before the broker is called, so across processes
exactly one caller spends a refresh token; the others wait for its result. No transaction stays
open while the broker is asked."""

import asyncio
import json
import logging
import uuid
import weakref
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from application.broker_reauth import needs_reauth
from application.egress_issuance import EgressAccess, EgressIssuer
from application.errors import Conflict, DependencyUnavailable, Forbidden, InvalidInput, NotFound, RateLimited
from application.identity import RequestContext
from application.ports.audit import AuditJournal
from application.ports.clock import Clock
from application.ports.credential_sealing import (
    CredentialOpener,
    CredentialUnreadable,
    broker_tokens_context,
    integration_secret_context,
)
from application.ports.ctrader import (
    BrokerNotReached,
    BrokerRefused,
    BrokerTokenInvalid,
    BrokerUnavailable,
    CtraderOAuth,
)
from application.ports.mailer import Mailer
from application.ports.rate_limiter import RateLimit, RateLimiter
from application.ports.service_tokens import ServiceToken
from application.ports.unit_of_work import UnitOfWork, UnitOfWorkFactory
from application.ports.vault_reader import AccessView, VaultReader
from domain.audit import ActorKind, AuditEvent
from domain.brokers import BrokerConnection, ConnectedAccount, ConnectionStatus
from domain.service_clients import BROKER_CREDENTIALS_USE, INTEGRATION_SECRETS_USE

log = logging.getLogger("bulwark.vault")

PURPOSE_MAX = 200


class NeedsReauth(Conflict):
    """The broker no longer honours this connection; its owner must connect it again."""

    code = "needs_reauth"


@dataclass(frozen=True)
class VaultPolicy:
    frontend_url: str = "http://localhost:5173"
    refresh_margin: timedelta = timedelta(days=7)
    # Longer than any broker call may take: a claim older than this was abandoned mid-call.
    refresh_patience: timedelta = timedelta(seconds=30)
    access_per_client: tuple[RateLimit, ...] = (RateLimit(20000, 60),)


@dataclass
class VaultPorts:
    uow: UnitOfWorkFactory
    clock: Clock
    opener: CredentialOpener
    oauth: CtraderOAuth | None
    mailer: Mailer
    limiter: RateLimiter
    journal: AuditJournal
    reader: VaultReader
    policy: VaultPolicy = field(default_factory=VaultPolicy)
    # The dedicated egress address and its proxy credential, handed out with the tokens.
    egress: EgressIssuer | None = None
    # One refresh per connection per process; other processes are held off by the claim.
    _locks: "weakref.WeakValueDictionary[uuid.UUID, asyncio.Lock]" = field(
        default_factory=weakref.WeakValueDictionary
    )
    # Refreshes running on after their request ended (kept referenced until they finish).
    in_flight: "set[asyncio.Future[BrokerConnection]]" = field(default_factory=set)

    def lock_for(self, connection_id: uuid.UUID) -> asyncio.Lock:
        lock = self._locks.get(connection_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[connection_id] = lock
        return lock


@dataclass(frozen=True)
class CredentialAccess:
    access_token: str = field(repr=False)
    expires_at: datetime
    accounts: tuple[ConnectedAccount, ...]
    scope: str
    egress: EgressAccess | None = None
    # The owner holds no dedicated address (yet): the gateway refuses their broker traffic.
    egress_pending: bool = False


async def _enforce(ports: VaultPorts, client: ServiceToken, scope: str) -> None:
    if scope not in client.scopes:
        raise Forbidden(f"This needs the `{scope}` scope.", code="insufficient_scope")
    checks = [
        (f"vault-access:{client.client_id}:{i}", limit)
        for i, limit in enumerate(ports.policy.access_per_client)
    ]
    decisions = await ports.limiter.hit_many(checks)
    refused = [d.retry_after for d in decisions if not d.allowed]
    if refused:
        raise RateLimited(max(refused))


def _purpose(text: str) -> str:
    text = text.strip()
    if not 1 <= len(text) <= PURPOSE_MAX or not text.isprintable():
        raise InvalidInput(f"purpose must be 1..{PURPOSE_MAX} printable characters.", field="purpose")
    return text


async def _live_client(uow: UnitOfWork, client: ServiceToken) -> None:
    """A disabled client stops at once, whatever its token's lifetime."""
    stored = await uow.service_clients.get(client.client_id)
    if stored is None or stored.is_disabled:
        raise Forbidden("This service client is disabled.", code="client_disabled")


def _decided(view: AccessView | None) -> BrokerConnection:
    """The rules of an access, on one read: the client, the connection, its org and its owner."""
    if view is None or view.connection.status is ConnectionStatus.REVOKED:
        raise NotFound("No such broker connection.")
    if not view.client_usable:
        raise Forbidden("This service client is disabled.", code="client_disabled")
    if view.org_disabled:
        raise Forbidden("The connection's organisation is disabled.", code="org_disabled")
    if view.owner_suspended:
        raise Forbidden("The connection's owner is paused or closed.", code="owner_unavailable")
    if not view.owner_is_member:
        raise Forbidden("The connection's owner left the organisation.", code="owner_unavailable")
    if view.connection.status is ConnectionStatus.NEEDS_REAUTH or view.connection.sealed is None:
        raise NeedsReauth("The owner must connect this broker account again.")
    return view.connection


def _open_tokens(ports: VaultPorts, connection: BrokerConnection) -> dict[str, str]:
    assert connection.sealed is not None
    try:
        plaintext = ports.opener.open(
            connection.sealed, broker_tokens_context(connection.id, connection.org_id)
        )
    except CredentialUnreadable:
        log.error("broker connection %s does not open in this vault", connection.id)
        raise DependencyUnavailable("The credential cannot be opened by this vault.") from None
    tokens: dict[str, str] = json.loads(plaintext)
    return tokens


@dataclass
class AccessBrokerCredentials:
    ports: VaultPorts

    async def __call__(
        self, client: ServiceToken, connection_id: uuid.UUID, purpose: str, ctx: RequestContext
    ) -> CredentialAccess:
        ports = self.ports
        await _enforce(ports, client, BROKER_CREDENTIALS_USE)
        purpose = _purpose(purpose)
        connection = _decided(await ports.reader.access_view(connection_id, client.client_id))
        if ports.oauth is not None and connection.due_for_refresh(
            ports.clock.now(), ports.policy.refresh_margin
        ):
            await refresh_connection(ports, connection, ctx)
            connection = _decided(await ports.reader.access_view(connection_id, client.client_id))
        access = _access(ports, connection)
        if ports.egress is not None:
            egress = await ports.egress.for_user(connection.created_by)
            access = replace(access, egress=egress, egress_pending=egress is None)
        # Handed out only once the entry saying so is committed.
        await ports.journal.record(_accessed(ctx, client, connection, purpose, access))
        return access


def _access(ports: VaultPorts, connection: BrokerConnection) -> CredentialAccess:
    if connection.is_expired(ports.clock.now()):
        raise NeedsReauth("The access token expired and could not be refreshed.")
    assert connection.access_expires_at is not None
    return CredentialAccess(
        access_token=_open_tokens(ports, connection)["access_token"],
        expires_at=connection.access_expires_at,
        accounts=connection.accounts,
        scope=str(connection.scope),
    )


def _accessed(
    ctx: RequestContext,
    client: ServiceToken,
    connection: BrokerConnection,
    purpose: str,
    access: CredentialAccess,
) -> AuditEvent:
    event = ctx.event(
        "broker_credentials.accessed",
        actor_kind=ActorKind.SERVICE,
        org=connection.org_id,
        target_type="broker_connection",
        target_id=connection.id,
        client_id=client.client_id,
        purpose=purpose,
    )
    if access.egress is not None:
        event.details["egress_address"] = access.egress.address
    elif access.egress_pending:
        event.details["egress_pending"] = True
    return event


async def refresh_connection(
    ports: VaultPorts, seen: BrokerConnection, ctx: RequestContext
) -> BrokerConnection:
    """Returns the connection after a refresh (by this caller or by whoever held the claim)."""
    oauth = ports.oauth
    if oauth is None:
        return seen
    async with ports.lock_for(seen.id):
        current = await _reread(ports, seen)
        if current.generation != seen.generation or not current.due_for_refresh(
            ports.clock.now(), ports.policy.refresh_margin
        ):
            return current  # refreshed meanwhile by this process or another
        # Opened before the claim: a vault that cannot open the row must not leave a claim behind.
        tokens = _open_tokens(ports, current)
        if not await _claim(ports, current):
            return await _await_other(ports, current, ctx)
        # From the claim to its end the work runs as a task of its own: a request cancelled by its
        # timeout must not drop tokens the broker has just rotated, nor leave the claim dangling.
        task = asyncio.ensure_future(_refresh_claimed(ports, oauth, current, tokens["refresh_token"], ctx))
        ports.in_flight.add(task)
        task.add_done_callback(ports.in_flight.discard)
        return await asyncio.shield(task)


async def _reread(ports: VaultPorts, seen: BrokerConnection) -> BrokerConnection:
    async with ports.uow() as uow:
        current = await uow.broker_connections.get(seen.org_id, seen.id)
    if current is None or current.status is ConnectionStatus.REVOKED:
        raise NotFound("No such broker connection.")
    if current.status is ConnectionStatus.NEEDS_REAUTH or current.sealed is None:
        raise NeedsReauth("The owner must connect this broker account again.")
    return current


async def _claim(ports: VaultPorts, connection: BrokerConnection) -> bool:
    async with ports.uow() as uow:
        won = await uow.broker_connections.claim_refresh(
            connection.org_id, connection.id, connection.generation, ports.clock.now()
        )
        await uow.commit()
    return won


async def _await_other(ports: VaultPorts, seen: BrokerConnection, ctx: RequestContext) -> BrokerConnection:
    """Another process holds the claim: wait for its result, and give up on a dead claimant."""
    deadline = ports.clock.now() + ports.policy.refresh_patience
    while True:
        current = await _reread(ports, seen)
        if current.generation != seen.generation:
            return current
        if current.refresh_claimed_at is None:
            return current  # released: the broker was never reached; the caller decides
        if current.refresh_is_stale(ports.clock.now(), ports.policy.refresh_patience):
            await _lost(ports, current, ctx, "refresh abandoned mid-call; the refresh token may be spent")
        if ports.clock.now() >= deadline:
            raise DependencyUnavailable("A refresh of this connection is still in progress.")
        await asyncio.sleep(0.05)


async def _lost(ports: VaultPorts, connection: BrokerConnection, ctx: RequestContext, reason: str) -> None:
    await needs_reauth(
        ports.uow,
        ports.mailer,
        ports.clock,
        ports.policy.frontend_url,
        org_id=connection.org_id,
        connection_id=connection.id,
        reason=reason,
        ctx=ctx,
    )
    raise NeedsReauth("The owner must connect this broker account again.")


async def _release(ports: VaultPorts, connection: BrokerConnection) -> None:
    async with ports.uow() as uow:
        await uow.broker_connections.release_refresh(connection.org_id, connection.id, connection.generation)
        await uow.commit()


async def _refresh_claimed(
    ports: VaultPorts,
    oauth: CtraderOAuth,
    connection: BrokerConnection,
    refresh_token: str,
    ctx: RequestContext,
) -> BrokerConnection:
    try:
        fresh = await oauth.refresh(refresh_token)
    except BrokerTokenInvalid as dead:
        await _lost(ports, connection, ctx, f"refresh refused ({dead.error_code})")
        raise  # unreachable: _lost raises
    except (BrokerNotReached, BrokerRefused) as refused:
        # Nothing changed at the broker (never reached, throttled, or an error that says nothing
        # about the token): the refresh token is unspent; the next access tries again.
        await _release(ports, connection)
        log.warning("refresh of broker connection %s not done: %s", connection.id, type(refused).__name__)
        if connection.is_expired(ports.clock.now()):
            raise DependencyUnavailable("The broker cannot be reached.", code="broker_unavailable") from None
        return connection  # the current token still works
    except BrokerUnavailable:
        await _lost(ports, connection, ctx, "refresh answer lost; the refresh token may be spent")
        raise
    except BaseException:
        await _lost(ports, connection, ctx, "refresh interrupted after the broker was called")
        raise
    now = ports.clock.now()
    plaintext = fresh.plaintext()
    sealed = ports.opener.sealer().seal(plaintext, broker_tokens_context(connection.id, connection.org_id))
    async with ports.uow() as uow:
        stored = await uow.broker_connections.finish_refresh(
            connection.org_id,
            connection.id,
            connection.generation,
            sealed,
            now + timedelta(seconds=max(0, fresh.expires_in)),
            now,
        )
        if stored:
            await uow.audit.append(
                ctx.event(
                    "broker_connection.refreshed",
                    actor_kind=ActorKind.SYSTEM,
                    org=connection.org_id,
                    target_type="broker_connection",
                    target_id=connection.id,
                )
            )
        await uow.commit()
    if stored:
        return await _reread(ports, connection)
    # Revoked, or re-authorised with new tokens, while the broker answered: those stand, and the
    # tokens just refreshed are dropped. Anything else would leave a spent refresh token active.
    current = await _reread(ports, connection)
    if current.refresh_claimed_at is not None:
        await _lost(ports, current, ctx, "refreshed tokens could not be stored")
    return current


@dataclass
class ReportInvalidToken:
    """A worker saw the broker refuse the token (CH_ACCESS_TOKEN_INVALID, a token-invalidated
    event): the connection needs its owner at once."""

    ports: VaultPorts

    async def __call__(
        self, client: ServiceToken, connection_id: uuid.UUID, reason: str, ctx: RequestContext
    ) -> None:
        await _enforce(self.ports, client, BROKER_CREDENTIALS_USE)
        reason = _purpose(reason)
        async with self.ports.uow() as uow:
            await _live_client(uow, client)
            org_id = await uow.broker_connections.org_of("broker_connections", connection_id)
        if org_id is None:
            raise NotFound("No such broker connection.")
        await needs_reauth(
            self.ports.uow,
            self.ports.mailer,
            self.ports.clock,
            self.ports.policy.frontend_url,
            org_id=org_id,
            connection_id=connection_id,
            reason=f"reported by service client {client.client_id}: {reason}",
            ctx=ctx,
            actor_kind=ActorKind.SERVICE,
        )


@dataclass(frozen=True)
class RefreshReport:
    refreshed: int
    needs_reauth: int
    failed: int


@dataclass
class RefreshDue:
    """`bulwark vault refresh-due`, for a timer: every connection inside the margin, refreshed."""

    ports: VaultPorts

    async def __call__(self) -> RefreshReport:
        ports = self.ports
        ctx = RequestContext(ip="vault-timer")
        horizon = ports.clock.now() + ports.policy.refresh_margin
        async with ports.uow() as uow:
            rows = await uow.broker_connections.sealed_directory()
        refreshed = lost = failed = 0
        for row in rows:
            if row.table != "broker_connections" or (
                row.access_expires_at and row.access_expires_at > horizon
            ):
                continue
            try:
                async with ports.uow() as uow:
                    connection = await uow.broker_connections.get(row.org_id, row.id)
                if connection is None or not connection.is_usable:
                    continue
                await refresh_connection(ports, connection, ctx)
                refreshed += 1
            except NeedsReauth:
                lost += 1
            except Exception:
                log.exception("refresh of broker connection %s failed", row.id)
                failed += 1
        return RefreshReport(refreshed, lost, failed)


@dataclass(frozen=True)
class RotationReport:
    resealed: int
    already_current: int
    busy: int = 0  # refreshing right then: they take the new key on their refresh, or a rerun


@dataclass
class ResealCredentials:
    """After the vault gains a new active key: every sealed row re-sealed under it, one short
    transaction per row, so the service keeps running. Old keys stay until nothing uses them."""

    ports: VaultPorts

    async def __call__(self) -> RotationReport:
        ports = self.ports
        active = ports.opener.active_key_id()
        sealer = ports.opener.sealer()
        async with ports.uow() as uow:
            rows = await uow.broker_connections.sealed_directory()
        resealed = current = busy = 0
        for row in rows:
            if row.key_id == active:
                current += 1
                continue
            async with ports.uow() as uow:
                if row.table == "broker_connections":
                    connection = await uow.broker_connections.get(row.org_id, row.id)
                    if connection is None or connection.sealed is None:
                        continue
                    context = broker_tokens_context(row.id, row.org_id)
                    plaintext = ports.opener.open(connection.sealed, context)
                    done = await uow.broker_connections.reseal(
                        row.org_id, row.id, connection.generation, sealer.seal(plaintext, context)
                    )
                else:
                    secret = await uow.integration_secrets.get(row.org_id, row.id)
                    if secret is None or secret.sealed is None:
                        continue
                    context = integration_secret_context(row.id, row.org_id)
                    plaintext = ports.opener.open(secret.sealed, context)
                    done = await uow.integration_secrets.reseal(
                        row.org_id, row.id, secret.sealed.key_id, sealer.seal(plaintext, context)
                    )
                await uow.commit()
            resealed += int(done)
            busy += int(not done)
        return RotationReport(resealed, current, busy)


@dataclass
class AccessIntegrationSecret:
    ports: VaultPorts

    async def __call__(
        self, client: ServiceToken, secret_id: uuid.UUID, purpose: str, ctx: RequestContext
    ) -> bytes:
        ports = self.ports
        await _enforce(ports, client, INTEGRATION_SECRETS_USE)
        purpose = _purpose(purpose)
        async with ports.uow() as uow:
            await _live_client(uow, client)
            org_id = await uow.broker_connections.org_of("integration_secrets", secret_id)
            secret = await uow.integration_secrets.get(org_id, secret_id) if org_id is not None else None
            if secret is None or secret.sealed is None:
                raise NotFound("No such integration secret.")
            org = await uow.orgs.get(secret.org_id)
            if org is None or org.is_disabled:
                raise Forbidden("The secret's organisation is disabled.", code="org_disabled")
        try:
            value = ports.opener.open(secret.sealed, integration_secret_context(secret.id, secret.org_id))
        except CredentialUnreadable:
            raise DependencyUnavailable("The secret cannot be opened by this vault.") from None
        await ports.journal.record(
            ctx.event(
                "integration_secret.accessed",
                actor_kind=ActorKind.SERVICE,
                org=secret.org_id,
                target_type="integration_secret",
                target_id=secret.id,
                client_id=client.client_id,
                purpose=purpose,
            )
        )
        return value
