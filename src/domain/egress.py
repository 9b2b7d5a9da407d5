"""Dedicated outbound IPv4 addresses, each serving at most one paying user at a time.

The lifecycle of one address (the README draws it):

    available --allocate--> allocated --start_teardown--> draining --detached--> cooling
        ^                                                    |                      |
        +------------------- cooled (after the cooldown) ----|----------------------+
                                                             |                      |
    released <---- released (a growing provider confirmed) --+----------------------+

A fixed pool's address cools before its next holder gets it, so nobody inherits a broker-side
association. A growing provider's (Hetzner's) address is given back as soon as the gateway
confirmed the detach: it leaves our pool, so no later user of ours inherits it, and it is not paid
for while it rests; a delete that fails leaves it `draining` until a retry is confirmed.

Every transition is a pure rule here: it takes the address as read and answers the address as it
must be written, or None when the address is already where the rule would take it (so a retry
after a crash is a no-op), or raises `EgressTransitionRefused` when the rule does not apply. The
storage writes a transition only from the state it was computed from, so two writers racing
cannot both win."""

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

DEFAULT_DOWNGRADE_GRACE = timedelta(days=7)
DEFAULT_COOLDOWN = timedelta(days=7)


class EgressState(StrEnum):
    AVAILABLE = "available"  # in the pool, nobody's
    ALLOCATED = "allocated"  # bound to one user: their broker traffic leaves from it
    DRAINING = "draining"  # teardown phase 1: unbound, the gateway is cutting the user's traffic
    COOLING = "cooling"  # phase 1 confirmed; not reusable until the cooldown ends
    RELEASED = "released"  # given back to the provider (final)


# The user column names the holder (or the last holder, during teardown) in these states only.
HELD_STATES = (EgressState.ALLOCATED, EgressState.DRAINING, EgressState.COOLING)
TEARDOWN_STATES = (EgressState.DRAINING, EgressState.COOLING)

ALLOWED: dict[EgressState, frozenset[EgressState]] = {
    EgressState.AVAILABLE: frozenset({EgressState.ALLOCATED}),
    EgressState.ALLOCATED: frozenset({EgressState.DRAINING}),
    # Released straight from draining only by a growing provider, after the gateway's detach.
    EgressState.DRAINING: frozenset({EgressState.COOLING, EgressState.RELEASED}),
    EgressState.COOLING: frozenset({EgressState.AVAILABLE, EgressState.RELEASED}),
    # The provider may hand a released address out again: it comes back through the pool.
    EgressState.RELEASED: frozenset({EgressState.AVAILABLE}),
}


class EgressTransitionRefused(ValueError):
    """The rule does not apply to the address as it is (wrong state, wrong user, too early)."""


@dataclass(frozen=True)
class EgressActor:
    """Who caused a transition: `system` (the job, a plan change, a closure), `admin` or `user`."""

    kind: str
    id: UUID | None = None

    def __str__(self) -> str:
        return self.kind if self.id is None else f"{self.kind}:{self.id}"


SYSTEM = EgressActor("system")


@dataclass(frozen=True)
class EgressAddress:
    address: str
    provider_ref: str
    state: EgressState
    since: datetime  # when it entered its state
    user_id: UUID | None = None  # the holder in HELD_STATES, else None
    grace_until: datetime | None = None  # allocated to a user who stopped paying: teardown then
    cool_until: datetime | None = None  # cooling: reusable (or releasable) from then on

    @property
    def live(self) -> bool:
        return self.state is EgressState.ALLOCATED


@dataclass(frozen=True)
class EgressTransition:
    """One recorded change: the address as written, where it came from, who and why."""

    before: EgressAddress
    after: EgressAddress
    actor: EgressActor
    reason: str
    at: datetime

    @property
    def from_state(self) -> EgressState:
        return self.before.state

    @property
    def to_state(self) -> EgressState:
        return self.after.state


def _move(
    address: EgressAddress,
    to: EgressState,
    now: datetime,
    actor: EgressActor,
    reason: str,
    **changes: object,
) -> EgressTransition:
    if to not in ALLOWED[address.state]:
        raise EgressTransitionRefused(f"{address.address} is {address.state}: it cannot become {to}")
    after = replace(address, state=to, since=now, **changes)  # type: ignore[arg-type]
    return EgressTransition(address, after, actor, reason, now)


def allocate(
    address: EgressAddress, user_id: UUID, now: datetime, actor: EgressActor, reason: str
) -> EgressTransition | None:
    """available -> allocated to `user_id`. None when it is already that user's."""
    if address.state is EgressState.ALLOCATED and address.user_id == user_id:
        return None
    return _move(
        address,
        EgressState.ALLOCATED,
        now,
        actor,
        reason,
        user_id=user_id,
        grace_until=None,
        cool_until=None,
    )


def start_teardown(
    address: EgressAddress, now: datetime, actor: EgressActor, reason: str
) -> EgressTransition | None:
    """allocated -> draining: from here on the address is nobody's live binding. None when the
    teardown has begun already (draining, cooling, released)."""
    if address.state in (*TEARDOWN_STATES, EgressState.RELEASED):
        return None
    return _move(address, EgressState.DRAINING, now, actor, reason, grace_until=None)


def detached(
    address: EgressAddress, now: datetime, cooldown: timedelta, actor: EgressActor = SYSTEM
) -> EgressTransition | None:
    """draining -> cooling, once the gateway confirmed the holder's traffic has stopped (the
    caller asks it; this rule is only taken with its confirmation). None when past draining."""
    if address.state in (EgressState.COOLING, EgressState.AVAILABLE, EgressState.RELEASED):
        return None
    return _move(
        address, EgressState.COOLING, now, actor, "gateway confirmed detach", cool_until=now + cooldown
    )


def cooled(address: EgressAddress, now: datetime, actor: EgressActor = SYSTEM) -> EgressTransition | None:
    """cooling -> available once the cooldown is over: the next holder inherits no broker-side
    association. None when it is available already."""
    if address.state is EgressState.AVAILABLE:
        return None
    _require_cooled(address, now)
    return _move(address, EgressState.AVAILABLE, now, actor, "cooldown over", user_id=None, cool_until=None)


def released(address: EgressAddress, now: datetime, actor: EgressActor = SYSTEM) -> EgressTransition | None:
    """draining or cooling -> released, once the provider confirmed the address is gone (the
    caller asks it, and from draining only after the gateway confirmed the detach); from cooling
    only after the cooldown. None when released already."""
    if address.state is EgressState.RELEASED:
        return None
    _require_cooled(address, now)
    return _move(
        address,
        EgressState.RELEASED,
        now,
        actor,
        "provider confirmed release",
        user_id=None,
        cool_until=None,
    )


def acquired(
    address: EgressAddress, provider_ref: str, now: datetime, actor: EgressActor = SYSTEM
) -> EgressTransition | None:
    """released -> available: the provider gave us this address again (a new Primary IP that
    happens to reuse it). None when it is in the ledger's pool or held already."""
    if address.state is not EgressState.RELEASED:
        return None
    return _move(
        address, EgressState.AVAILABLE, now, actor, "acquired from provider", provider_ref=provider_ref
    )


def _require_cooled(address: EgressAddress, now: datetime) -> None:
    if address.state is EgressState.COOLING and (address.cool_until is None or now < address.cool_until):
        raise EgressTransitionRefused(f"{address.address} cools until {address.cool_until}")


def cooldown_over(address: EgressAddress, now: datetime) -> bool:
    return (
        address.state is EgressState.COOLING and address.cool_until is not None and now >= address.cool_until
    )


# --- The holder's plan: a downgrade keeps the address for a grace period, a re-upgrade keeps it.


def start_grace(address: EgressAddress, now: datetime, grace: timedelta) -> EgressAddress | None:
    """The holder stopped paying: teardown is due at now + grace. None when not allocated or
    the grace runs already (a second downgrade does not push the end further out)."""
    if address.state is not EgressState.ALLOCATED or address.grace_until is not None:
        return None
    return replace(address, grace_until=now + grace)


def end_grace(address: EgressAddress) -> EgressAddress | None:
    """The holder pays again inside the grace: they keep the same address. None when no grace runs."""
    if address.state is not EgressState.ALLOCATED or address.grace_until is None:
        return None
    return replace(address, grace_until=None)


def grace_over(address: EgressAddress, now: datetime) -> bool:
    return (
        address.state is EgressState.ALLOCATED
        and address.grace_until is not None
        and now >= address.grace_until
    )


def stuck(address: EgressAddress, now: datetime, threshold: timedelta) -> bool:
    """A teardown that has not moved for longer than the threshold (draining: the gateway never
    confirms, or a growing provider's delete keeps failing; cooling: the provider never releases)."""
    if address.state is EgressState.DRAINING:
        return now - address.since > threshold
    if address.state is EgressState.COOLING and address.cool_until is not None:
        return now - address.cool_until > threshold
    return False


def allocation_label(attempt_id: UUID) -> str:
    """The provider label of one allocation attempt (recorded before the provider is asked): the
    same on every retry of that attempt, so a crash between the provider's "created" and the
    ledger's "recorded" adopts the address instead of leaking it; a later allocation of the same
    user gets a new attempt, so it never adopts the address still cooling from the last one."""
    return f"egress-{attempt_id.hex}"
