"""The egress ledger's shared moves: allocating a user an address, following a plan change,
starting a user's teardown. The plan change, the admin panel, the account closure and the job
all go through these, so each rule is applied in one place.

Allocation runs in one transaction that first locks the user's row and checks they may hold an
address (active, on a paying plan): a closure or a downgrade committed meanwhile is seen, never
raced past. Then one available address is taken with `FOR UPDATE SKIP LOCKED`, and the database's
unique index on live bindings refuses a second address for the same user whatever the code does."""

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from application.ports.clock import Clock
from application.ports.egress_gateway import EgressGateway
from application.ports.egress_provider import (
    EgressAttachRefused,
    EgressProvider,
    EgressProviderExhausted,
    EgressProviderUnavailable,
    ProviderAddress,
)
from application.ports.egress_repository import EgressUserAlreadyBound
from application.ports.mailer import Mailer, MailMessage
from application.ports.unit_of_work import UnitOfWork, UnitOfWorkFactory
from domain import egress
from domain.egress import (
    DEFAULT_COOLDOWN,
    DEFAULT_DOWNGRADE_GRACE,
    EgressActor,
    EgressAddress,
    EgressState,
    EgressTransition,
)
from domain.plans import PlanCatalog
from domain.users import UserStatus

log = logging.getLogger("bulwark.egress")

_ATTEMPTS = 5  # an address taken from under us is tried again this often
PROVIDER_FULL_BACKOFF = timedelta(minutes=15)  # a growing provider that said "full" is left alone
_TAKEN_MEANWHILE = object()


@dataclass(frozen=True)
class EgressPolicy:
    downgrade_grace: timedelta = DEFAULT_DOWNGRADE_GRACE
    cooldown: timedelta = DEFAULT_COOLDOWN
    stuck_after: timedelta = timedelta(hours=6)  # a teardown not moving for longer is reported
    paused_stale_after: timedelta = timedelta(days=30)  # a paused holder's address is then stale


# Called between an outside effect and its record, and between records (crash injection).
StepHook = Callable[[str], Awaitable[None]]


async def _no_hook(_: str) -> None:
    return None


@dataclass
class EgressPorts:
    uow: UnitOfWorkFactory
    clock: Clock
    provider: EgressProvider
    # None: no gateway is configured, so no detach can be confirmed and teardowns wait in
    # `draining` (reported as stuck) rather than be assumed done.
    gateway: EgressGateway | None
    mailer: Mailer
    plans: PlanCatalog
    policy: EgressPolicy = field(default_factory=EgressPolicy)
    after_step: StepHook = _no_hook


@dataclass(frozen=True)
class Allocation:
    address: EgressAddress | None  # None: the pool is exhausted, the user waits (`egress_pending`)
    new: bool = False
    refused: str = ""  # why the user may not hold an address now (closed, not paying, ...)


def may_hold(status: UserStatus, plan: str, plans: PlanCatalog) -> str:
    """Empty when an account with this status and plan may be given an address, else why not."""
    if status is not UserStatus.ACTIVE:
        return f"the account is {status}"
    if not plans.is_paying(plan):
        return f"the plan {plan!r} is not a paying plan"
    return ""


async def start_teardown_of(
    uow: UnitOfWork, user_id: UUID, now: datetime, actor: EgressActor, reason: str
) -> list[EgressTransition]:
    """Inside the caller's unit of work: the user's live address leaves `allocated` at once
    (the gateway's next admission refuses it); the job does the rest. Idempotent."""
    done = []
    for held in await uow.egress.held_by(user_id):
        move = egress.start_teardown(held, now, actor, reason)
        if move is not None and await uow.egress.apply(move):
            done.append(move)
    await uow.egress.stop_waiting(user_id)
    return done


class EgressLedger:
    def __init__(self, ports: EgressPorts) -> None:
        self.ports = ports
        self._provider_full = ""
        self._provider_full_until: datetime | None = None

    async def allocate(self, user_id: UUID, actor: EgressActor, reason: str) -> Allocation:
        """The user's live address, allocating one when they have none and may hold one.
        Safe to call concurrently for any users, the same one included."""
        for _ in range(_ATTEMPTS):
            try:
                outcome = await self._take_available(user_id, actor, reason)
            except EgressUserAlreadyBound:
                # A concurrent allocation for the same user won: theirs is the answer.
                async with self.ports.uow() as uow:
                    live = await uow.egress.live_for_user(user_id)
                if live is not None:
                    return Allocation(live)
                continue
            if outcome is _TAKEN_MEANWHILE:
                continue
            if isinstance(outcome, Allocation):
                return outcome
            if not await self._grow_pool():
                break
        return await self._wait(user_id, actor, reason)

    async def _take_available(
        self, user_id: UUID, actor: EgressActor, reason: str
    ) -> Allocation | object | None:
        """An Allocation; None when no address is available; _TAKEN_MEANWHILE to try again."""
        now = self.ports.clock.now()
        among = await self._fixed_pool()
        async with self.ports.uow() as uow:
            refused = await self._refusal(uow, user_id)
            if refused:
                return Allocation(None, refused=refused)
            live = await uow.egress.live_for_user(user_id)
            if live is not None:
                await uow.egress.stop_waiting(user_id)
                await uow.commit()
                return Allocation(live)
            picked = await uow.egress.pick_available(among)
            if picked is None:
                return None
            move = egress.allocate(picked, user_id, now, actor, reason)
            if move is None or not await uow.egress.apply(move):
                return _TAKEN_MEANWHILE
            await uow.egress.stop_waiting(user_id)
            await uow.commit()
        return Allocation(move.after, new=True)

    async def _fixed_pool(self) -> frozenset[str] | None:
        """A fixed pool's addresses as configured now: one taken out of BULWARK_EGRESS_POOL stays
        in the ledger (the audit lists it as missing) but is never handed out again, since
        squid.conf no longer names it. None for a growing provider (the ledger is its pool)."""
        provider = self.ports.provider
        if provider.grows:
            return None
        try:
            return frozenset(a.address for a in await provider.owned())
        except EgressProviderUnavailable:
            return None

    async def _refusal(self, uow: UnitOfWork, user_id: UUID) -> str:
        holder = await uow.egress.lock_holder(user_id)
        if holder is None:
            return "no such account"
        return may_hold(holder[0], holder[1], self.ports.plans)

    async def _grow_pool(self) -> bool:
        """A fixed pool: records the provider's addresses the ledger does not know yet (a first
        allocation, a pool widened in the settings). True when some were missing: worth a retry."""
        provider = self.ports.provider
        if provider.grows:
            return False
        try:
            owned = await provider.owned()
        except EgressProviderUnavailable:
            return False
        return await self.seed(owned) > 0

    async def seed(self, owned: Sequence[ProviderAddress]) -> int:
        """Records the provider's addresses the ledger did not know as available; answers how
        many it did not know (a concurrent seed may have recorded some of them first)."""
        now = self.ports.clock.now()
        async with self.ports.uow() as uow:
            known = {a.address for a in await uow.egress.every()}
            missing = [found for found in owned if found.address not in known]
            for found in missing:
                await uow.egress.add(found, now, egress.SYSTEM, "in the provider's pool")
            await uow.commit()
        return len(missing)

    async def _wait(self, user_id: UUID, actor: EgressActor, reason: str) -> Allocation:
        """No available address: a growing provider is asked for one (by the attempt's label, so a
        retry adopts what a crashed attempt created); otherwise the user waits."""
        now = self.ports.clock.now()
        async with self.ports.uow() as uow:
            refused = await self._refusal(uow, user_id)
            if refused:
                return Allocation(None, refused=refused)
            pending = await uow.egress.wait(user_id, now, uuid.uuid4())
            await uow.commit()
        error = "the pool has no available address"
        now = self.ports.clock.now()
        if (
            self.ports.provider.grows
            and self._provider_full_until is not None
            and now < self._provider_full_until
        ):
            until = f"{self._provider_full_until:%H:%M} UTC"
            error = f"{self.ports.provider.name}: full until {until} ({self._provider_full})"
        elif self.ports.provider.grows:
            try:
                found = await self.ports.provider.acquire(egress.allocation_label(pending.attempt_id))
                await self.ports.after_step("acquired")
                await self._attach_or_give_back(found)
                allocation = await self._record_acquired(found, user_id, actor, reason)
                if allocation is not None:
                    return allocation
            except EgressProviderExhausted as failure:
                # Asked again only after a while: each try may create and delete a billed address,
                # and every worker runs the job.
                self._provider_full, self._provider_full_until = str(failure), now + PROVIDER_FULL_BACKOFF
                error = f"{self.ports.provider.name}: {failure}"
            except EgressProviderUnavailable as failure:
                error = f"{self.ports.provider.name}: {failure}"
        async with self.ports.uow() as uow:
            await uow.egress.failed_attempt(user_id, error)
            await uow.commit()
        log.warning("egress pool exhausted: user %s waits for an address (%s)", user_id, error)
        try:
            await self.tell_admins()
        except Exception:
            log.exception("could not tell the administrators now; the egress job tries again")
        return Allocation(None)

    async def _attach_or_give_back(self, found: ProviderAddress) -> None:
        """An address the egress host refuses (Hetzner: it holds its one IPv4 already) is given
        back at once: kept, it would be billed and never used. Only on that refusal, and only
        while the ledger does not hold it: an assign that lost a race with a concurrent
        allocation of the same attempt fails otherwise, and that allocation records the address."""
        provider = self.ports.provider
        try:
            await provider.attach(found)
        except EgressAttachRefused:
            async with self.ports.uow() as uow:
                held = await uow.egress.get(found.address)
            if held is None or held.state is EgressState.RELEASED:
                try:
                    await provider.release(found)
                except EgressProviderUnavailable:
                    log.warning(
                        "could not give back unattached %s; the audit lists it as a leak", found.address
                    )
            raise

    async def _record_acquired(
        self, found: ProviderAddress, user_id: UUID, actor: EgressActor, reason: str
    ) -> Allocation | None:
        now = self.ports.clock.now()
        async with self.ports.uow() as uow:
            if await self._refusal(uow, user_id):
                # Closed or downgraded meanwhile: the new address joins the pool.
                await uow.egress.add(found, now, egress.SYSTEM, "acquired for a user who left")
                await uow.egress.stop_waiting(user_id)
                await uow.commit()
                return Allocation(None, refused="the account changed meanwhile")
            await uow.egress.add(found, now, egress.SYSTEM, "acquired from the provider")
            current = await uow.egress.lock(found.address)
            if current is not None and current.state is EgressState.RELEASED:
                again = egress.acquired(current, found.provider_ref, now)
                if again is not None and await uow.egress.apply(again):
                    current = again.after
            if current is None or current.state is not EgressState.AVAILABLE:
                log.error("provider gave %s, which the ledger holds as %s", found.address, current)
                return None
            move = egress.allocate(current, user_id, now, actor, reason)
            if move is None or not await uow.egress.apply(move):
                return None
            await uow.egress.stop_waiting(user_id)
            await uow.commit()
        return Allocation(move.after, new=True)

    async def tell_admins(self) -> int:
        """Mails every platform administrator once about users newly waiting for an address."""
        now = self.ports.clock.now()
        async with self.ports.uow() as uow:
            # Claimed before sending: concurrent callers never tell about the same user twice.
            fresh = await uow.egress.claim_unnotified(now)
            await uow.commit()
        if not fresh:
            return 0
        async with self.ports.uow() as uow:
            recipients = []
            for admin in await uow.platform_admins.all():
                user = await uow.users.get(admin.user_id)
                if user is not None and user.status is UserStatus.ACTIVE:
                    recipients.append(user.email)
        body = (
            f"{len(fresh)} paying account(s) wait for a dedicated egress address: the pool is exhausted.\n"
            "Their broker traffic is refused until one is allocated (the job retries).\n"
            "See GET /api/admin/v1/egress/audit or `bulwark egress audit`.\n\n"
            + "\n".join(f"- user {w.user_id}, waiting since {w.since.isoformat()}" for w in fresh)
        )
        for email in recipients:
            try:
                await self.ports.mailer.send(
                    MailMessage(to=email, subject="Bulwark: egress pool exhausted", body=body)
                )
            except Exception:
                log.exception("could not mail %s about the exhausted egress pool", email)
                async with self.ports.uow() as uow:
                    await uow.egress.unclaim([w.user_id for w in fresh])  # the next run tries again
                    await uow.commit()
                return 0
        return len(fresh)

    async def follow_plan(self, user_id: UUID, actor: EgressActor) -> Allocation | None:
        """After a plan (or status) change committed: paying gets an address (or keeps the one
        whose grace runs); no longer paying starts the grace; a closed account tears down now."""
        now = self.ports.clock.now()
        async with self.ports.uow() as uow:
            user = await uow.users.get(user_id)
            if user is None:
                return None
            if user.status is UserStatus.CLOSED:
                await start_teardown_of(uow, user_id, now, actor, "account closed")
                await uow.commit()
                return None
            live = await uow.egress.live_for_user(user_id)
            paying = self.ports.plans.is_paying(user.plan)
            if live is not None and not paying:
                graced = egress.start_grace(live, now, self.ports.policy.downgrade_grace)
                if graced is not None:
                    await uow.egress.set_grace(live, graced.grace_until, now, actor, "plan no longer paying")
            elif live is not None and egress.end_grace(live) is not None:
                await uow.egress.set_grace(live, None, now, actor, "paying again inside the grace")
            if not paying:
                await uow.egress.stop_waiting(user_id)
            await uow.commit()
        if paying and live is None and user.status is UserStatus.ACTIVE:
            return await self.allocate(user_id, actor, "plan became paying")
        return None
