"""What an MT5 bridge (the Expert Advisor) calls, authenticated by its key alone: hello binds the
key to the MT5 account it runs in, heartbeats keep it online. Bridges have their own limits,
counted per key and per address before any other work, so a runaway or hostile EA cannot starve
users or other bridges."""

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from application.bridge_keys import BridgeKeys, InvalidApiKey
from application.bridge_lookups import BridgeKeyLookups
from application.bridge_sightings import BridgeSightings
from application.errors import Conflict, Forbidden, InvalidInput, NotFound, RateLimited
from application.identity import RequestContext
from application.ports.bridge_presence import BridgePresence, Sighting
from application.ports.bridge_repository import BridgeStanding, LastSeen
from application.ports.clock import Clock
from application.ports.mailer import Mailer, MailMessage
from application.ports.rate_limiter import LimitDecision, RateLimit, RateLimiter
from application.ports.unit_of_work import UnitOfWork, UnitOfWorkFactory
from application.text_input import validated_text
from domain.address_blocks import address_block
from domain.audit import ActorKind
from domain.bridge_presence import SecondTerminal, figure_of
from domain.bridges import (
    BATCH_MAX,
    BoundAccount,
    Bridge,
    BridgeCommand,
    BridgeStatus,
    Deal,
    Position,
)
from domain.orgs import OrgRole
from domain.text_rules import has_control_characters

log = logging.getLogger("bulwark.bridges")

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class BridgeLimits:
    per_key: tuple[RateLimit, ...] = (RateLimit(120, 60),)
    per_ip: tuple[RateLimit, ...] = (RateLimit(600, 60),)


@dataclass
class BridgeApiPorts:
    uow: UnitOfWorkFactory
    clock: Clock
    keys: BridgeKeys
    limiter: RateLimiter
    presence: BridgePresence
    sightings: BridgeSightings
    lookups: BridgeKeyLookups  # keys checked on a gateway's behalf
    mailer: Mailer
    limits: BridgeLimits = field(default_factory=BridgeLimits)
    heartbeat_interval: timedelta = timedelta(seconds=30)
    frontend_url: str = "http://localhost:5173"


@dataclass(frozen=True)
class Hello:
    login: int
    server: str
    company: str
    currency: str
    leverage: int
    trade_mode: str
    terminal_build: int
    ea_version: str

    @property
    def account(self) -> BoundAccount:
        return BoundAccount(self.login, self.server, self.company)

    def checked(self) -> "Hello":
        """What an EA reports is stored and shown: bounded, and free of control characters."""
        return Hello(
            login=self.login,
            server=validated_text(self.server, "server", "The server", 100),
            company=validated_text(self.company, "company", "The company", 200, required=False),
            currency=validated_text(self.currency, "currency", "The currency", 10, required=False),
            leverage=self.leverage,
            trade_mode=validated_text(self.trade_mode, "trade_mode", "The trade mode", 40, required=False),
            terminal_build=self.terminal_build,
            ea_version=validated_text(self.ea_version, "ea_version", "The EA version", 40, required=False),
        )


@dataclass(frozen=True)
class Heartbeat:
    sent_at: datetime  # the terminal's clock
    connected: bool
    trade_allowed: bool
    balance: float
    equity: float
    margin: float
    margin_free: float

    def checked(self) -> "Heartbeat":
        if self.sent_at.tzinfo is None or not EARLIEST <= self.sent_at <= LATEST:
            raise InvalidInput(
                "`sent_at` must be a time with its zone between 1970 and 2100.", field="sent_at"
            )
        return self

    def figures(self) -> dict[str, object]:
        """What is kept of the last heartbeat, as JSON."""
        return {
            "sent_at": self.sent_at.isoformat(),
            "connected": self.connected,
            "trade_allowed": self.trade_allowed,
            "balance": self.balance,
            "equity": self.equity,
            "margin": self.margin,
            "margin_free": self.margin_free,
        }


_SUSPENDABLE = (BridgeStatus.PENDING, BridgeStatus.ONLINE, BridgeStatus.OFFLINE)
_WHY = {
    SecondTerminal.SECOND_ADDRESS: "was called from two addresses within one heartbeat interval",
    SecondTerminal.INTERLEAVED_CLOCK: "sent heartbeats whose terminal clocks interleave",
    SecondTerminal.INTERLEAVED_FIGURES: "sent heartbeats whose balances alternate between two accounts",
}


async def _count(ports: BridgeApiPorts, checks: list[tuple[str, RateLimit]]) -> None:
    decisions = await ports.limiter.hit_many(checks)
    _refuse_over_limit(decisions)


def _refuse_over_limit(decisions: list[LimitDecision]) -> None:
    refused = [d.retry_after for d in decisions if not d.allowed]
    if refused:
        raise RateLimited(max(refused))


def _per_ip(ports: BridgeApiPorts, ctx: RequestContext) -> list[tuple[str, RateLimit]]:
    block = address_block(ctx.ip)  # an IPv6 /64 counts as one address
    return [(f"bridge-ip:{block}:{i}", limit) for i, limit in enumerate(ports.limits.per_ip)]


async def admit(
    ports: BridgeApiPorts,
    key: str,
    ctx: RequestContext,
    sent_at: datetime | None = None,
    figure: str | None = None,
) -> BridgeStanding:
    """Counted per address before anything else; per key only once the key proved itself, so
    somebody who knows a bridge's id (it is in URLs) cannot spend its budget with junk keys.

    A key this worker holds warm proves itself without I/O, so its address and key windows and
    the bridge's presence are one step; any other key is counted per address before it is
    looked up. The presence catches a second terminal using the key (see `observe`): the bridge
    is suspended and its org's administrators are mailed."""
    windows: list[tuple[str, RateLimit]] = []
    standing = await ports.keys.warm(key)
    if standing is None:
        await _count(ports, _per_ip(ports, ctx))
        standing = await ports.keys.authenticate(key)
    else:
        windows += _per_ip(ports, ctx)
    bridge = standing.bridge
    windows += [(f"bridge-key:{bridge.id}:{i}", limit) for i, limit in enumerate(ports.limits.per_key)]
    sighting = Sighting(ip=ctx.ip, at=ports.clock.now(), sent_at=sent_at, figure=figure)
    verdict = await ports.presence.admit(bridge.id, sighting, windows, ports.heartbeat_interval)
    _refuse_over_limit(verdict.decisions)
    if verdict.second_terminal is not None:
        await _suspend(ports, bridge, ctx, verdict.second_terminal, verdict.previous_ip)
        raise Forbidden("Two terminals use this key: the bridge is suspended.", code="bridge_suspended")
    return standing


async def _live(uow: UnitOfWork, bridge: Bridge) -> Bridge:
    """In the request's own transaction, whatever the worker's cache says: the bridge is still
    usable (a revocation or suspension elsewhere counts at once)."""
    current = await uow.bridges.get(bridge.org_id, bridge.id)
    if current is None or current.status is BridgeStatus.REVOKED:
        raise InvalidApiKey()
    if current.status is BridgeStatus.SUSPENDED:
        raise Forbidden("This bridge is suspended.", code="bridge_suspended")
    return current


def _event(ctx: RequestContext, bridge: Bridge, action: str, **details: Any) -> Any:
    return ctx.event(
        action,
        actor_kind=ActorKind.BRIDGE,
        org=bridge.org_id,
        target_type="bridge",
        target_id=bridge.id,
        **details,
    )


@dataclass
class BridgeHello:
    ports: BridgeApiPorts

    async def __call__(self, key: str, hello: Hello, ctx: RequestContext) -> Bridge:
        ports = self.ports
        hello = hello.checked()
        bridge = (await admit(ports, key, ctx)).bridge
        now = ports.clock.now()
        async with ports.uow() as uow:
            if bridge.account is None and await uow.bridges.bind(
                bridge.org_id, bridge.id, hello.account, hello.terminal_build, hello.ea_version, now, ctx.ip
            ):
                await uow.audit.append(
                    _event(
                        ctx,
                        bridge,
                        "bridge.bound",
                        login=hello.login,
                        server=hello.server,
                        company=hello.company,
                    )
                )
                bound = await uow.bridges.get(bridge.org_id, bridge.id)
                await uow.commit()
                assert bound is not None
                await ports.keys.changed(bound.id, bound.version)
                return bound
            current = await _live(uow, bridge)
            if current.account is None or (current.account.login, current.account.server) != (
                hello.login,
                hello.server,
            ):
                # A copied key in another terminal: refused, and the refusal audited.
                await uow.audit.append(
                    _event(
                        ctx,
                        current,
                        "bridge.account_mismatch",
                        login=hello.login,
                        server=hello.server,
                        ip=ctx.ip,
                    )
                )
                await uow.commit()
                raise Forbidden("This key is bound to another MT5 account.", code="bridge_account_mismatch")
            await uow.bridges.seen(bridge.org_id, bridge.id, now, ctx.ip)
            await uow.commit()
            return current


@dataclass
class BridgeHeartbeat:
    """The call every bridge makes every 30 s or so: the key from the worker's memory, limits
    and presence in one shared step, and the mark written with others' in the next batch. No
    database round trip, so one machine serves six-figure bridge counts."""

    ports: BridgeApiPorts

    async def __call__(self, key: str, heartbeat: Heartbeat, ctx: RequestContext) -> Bridge:
        ports = self.ports
        heartbeat = heartbeat.checked()
        standing = await admit(ports, key, ctx, heartbeat.sent_at, figure_of(heartbeat.balance))
        bridge = _bound(standing.bridge)
        ports.sightings.note(
            LastSeen(bridge.org_id, bridge.id, ports.clock.now(), ctx.ip, heartbeat.figures())
        )
        return bridge


async def _suspend(
    ports: BridgeApiPorts, bridge: Bridge, ctx: RequestContext, why: SecondTerminal, previous_ip: str | None
) -> None:
    async with ports.uow() as uow:
        suspended = await uow.bridges.set_status(
            bridge.org_id, bridge.id, BridgeStatus.SUSPENDED, ports.clock.now(), only_from=_SUSPENDABLE
        )
        if suspended is None:
            # Revoked, or suspended already (by a call another worker took): audited and mailed
            # once, however many calls betray the second terminal.
            return
        await uow.audit.append(
            _event(ctx, bridge, "bridge.suspended", reason=str(why), ip=ctx.ip, previous_ip=previous_ip)
        )
        admins = [
            user
            for membership, user in await uow.authz.members(bridge.org_id)
            if membership.role is OrgRole.ADMINISTRATOR
        ]
        await uow.commit()
    await ports.keys.changed(bridge.id, suspended.version)
    link = f"{ports.frontend_url.rstrip('/')}/bridges"
    for admin in admins:
        message = MailMessage(
            to=admin.email,
            subject="A bridge was suspended: its key is used by two terminals",
            body=(
                f'Hello {admin.display_name},\n\nThe bridge "{bridge.name}" {_WHY[why]}: its key is in a '
                f"second terminal. It is suspended. Rotate its key before resuming it.\n\n"
                f"Addresses: {previous_ip or 'unknown'} and {ctx.ip}.\n\n{link}\n"
            ),
        )
        try:
            await ports.mailer.send(message)
        except Exception:
            log.exception("could not mail an administrator about bridge %s", bridge.id)


@dataclass
class DescribeBridge:
    """`POST /api/v1/authz/bridge`: the platform's services ask whose a key is."""

    ports: BridgeApiPorts

    async def __call__(self, key: str, ctx: RequestContext) -> Bridge:
        # Not counted against the bridge's own limits: a gateway asks on the bridge's behalf.
        return (await self.ports.lookups.authenticate(key, ctx.ip)).bridge


def _bound(bridge: Bridge) -> Bridge:
    if bridge.account is None:
        raise Conflict("Send a hello first: it binds the key to this MT5 account.", code="hello_required")
    return bridge


def _batch(items: list[Any], what: str) -> None:
    if len(items) > BATCH_MAX:
        raise InvalidInput(f"At most {BATCH_MAX} {what} per batch.", code="batch_too_large", field=what)
    tickets = [item.ticket for item in items]
    if len(set(tickets)) != len(tickets):
        raise InvalidInput(f"A batch names one of its {what} twice.", code="duplicate_ticket", field=what)
    for item in items:
        for name, value in vars(item).items():
            if isinstance(value, str) and has_control_characters(value):
                raise InvalidInput(f"{what}: `{name}` may not contain control characters.", field=what)
        if not EARLIEST <= item.time <= LATEST:
            raise InvalidInput(f"{what}: `time` must lie between 1970 and 2100.", field=what)


@dataclass
class BridgeDeals:
    """Idempotent on (bridge, ticket): a resent batch changes nothing and answers the same."""

    ports: BridgeApiPorts

    async def __call__(self, key: str, deals: list[Deal], ctx: RequestContext) -> int:
        _batch(deals, "deals")
        bridge = _bound((await admit(self.ports, key, ctx)).bridge)
        async with self.ports.uow() as uow:
            await _live(uow, bridge)
            await uow.bridge_reports.add_deals(bridge.org_id, bridge.id, deals, self.ports.clock.now())
            await uow.commit()
        return len(deals)


@dataclass
class BridgePositions:
    ports: BridgeApiPorts

    async def __call__(self, key: str, positions: list[Position], ctx: RequestContext) -> int:
        _batch(positions, "positions")
        bridge = _bound((await admit(self.ports, key, ctx)).bridge)
        async with self.ports.uow() as uow:
            await _live(uow, bridge)
            await uow.bridge_reports.put_positions(
                bridge.org_id, bridge.id, positions, self.ports.clock.now()
            )
            await uow.commit()
        return len(positions)


@dataclass
class PollCommands:
    """Each command is delivered once, to the first poll that sees it, and never after expiry."""

    ports: BridgeApiPorts

    async def __call__(self, key: str, after: int, ctx: RequestContext) -> list[BridgeCommand]:
        bridge = _bound((await admit(self.ports, key, ctx)).bridge)
        async with self.ports.uow() as uow:
            await _live(uow, bridge)
            taken = await uow.bridge_reports.take_commands(
                bridge.org_id, bridge.id, max(0, after), self.ports.clock.now(), limit=50
            )
            await uow.commit()
        return taken


@dataclass
class AckCommand:
    ports: BridgeApiPorts

    async def __call__(self, key: str, command_id: UUID, ctx: RequestContext) -> None:
        bridge = _bound((await admit(self.ports, key, ctx)).bridge)
        async with self.ports.uow() as uow:
            await _live(uow, bridge)
            acked = await uow.bridge_reports.ack_command(
                bridge.org_id, bridge.id, command_id, self.ports.clock.now()
            )
            await uow.commit()
        if not acked:
            raise NotFound("No such delivered command.")
