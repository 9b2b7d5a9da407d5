"""The egress ledger in storage: addresses, their recorded transitions, and the users waiting
for one. Every write of a transition is conditional on the state it was computed from."""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from application.ports.egress_provider import ProviderAddress
from domain.egress import EgressActor, EgressAddress, EgressState, EgressTransition
from domain.users import UserStatus


class EgressUserAlreadyBound(Exception):
    """The database refused a second live address for one user (its unique constraint): a
    concurrent allocation won. The unit of work is spoilt; read again in a new one."""


@dataclass(frozen=True)
class EgressPending:
    """A paying user the pool had no address for: retried by the job, admins told once."""

    user_id: UUID
    since: datetime
    attempt_id: UUID  # names the provider label of the current attempt
    attempts: int
    last_error: str
    notified_at: datetime | None


@dataclass(frozen=True)
class EgressSearch:
    limit: int
    state: EgressState | None = None
    user_id: UUID | None = None
    after: str | None = None  # the last address of the previous page


@dataclass(frozen=True)
class EgressHistoryEntry:
    address: str
    from_state: EgressState | None  # None: it entered the ledger
    to_state: EgressState
    user_id: UUID | None
    actor: str
    reason: str
    at: datetime


class EgressRepository(Protocol):
    async def get(self, address: str) -> EgressAddress | None: ...

    async def lock(self, address: str) -> EgressAddress | None:
        """The address, its row held until commit (PostgreSQL; SQLite's write lock holds all)."""
        ...

    async def lock_holder(self, user_id: UUID) -> tuple[UserStatus, str] | None:
        """The account's status and plan, its row held until commit: an allocation decided on
        them cannot race a closure or a plan change past it."""
        ...

    async def live_for_user(self, user_id: UUID) -> EgressAddress | None: ...

    async def held_by(self, user_id: UUID) -> list[EgressAddress]:
        """Every address the user holds or held last and is still tearing down."""
        ...

    async def pick_available(self, among: Collection[str] | None = None) -> EgressAddress | None:
        """One available address (of `among` when given), locked; one another transaction holds
        is skipped, never waited for (`FOR UPDATE SKIP LOCKED`), so concurrent allocations never
        block each other nor take the same address."""
        ...

    async def apply(self, transition: EgressTransition) -> bool:
        """Writes `transition.after` only if the row is still as `transition.before` (state and
        holder) and records who/why; False when it changed meanwhile. Raises
        EgressUserAlreadyBound when the user has another live address."""
        ...

    async def set_grace(
        self,
        address: EgressAddress,
        grace_until: datetime | None,
        now: datetime,
        actor: EgressActor,
        reason: str,
    ) -> bool:
        """Starts or ends an allocated address's downgrade grace (recorded); False when the
        address is no longer allocated to the same user."""
        ...

    async def add(self, found: ProviderAddress, now: datetime, actor: EgressActor, reason: str) -> bool:
        """Records a provider address as available; False when the ledger knows it already."""
        ...

    async def search(self, criteria: EgressSearch) -> list[EgressAddress]: ...

    async def every(self) -> list[EgressAddress]: ...

    async def in_states(self, states: tuple[EgressState, ...]) -> list[EgressAddress]: ...

    async def history(self, address: str, limit: int) -> list[EgressHistoryEntry]: ...

    async def paying_without_address(self, paying_plans: frozenset[str], limit: int) -> list[UUID]:
        """Active accounts on a paying plan that hold no live address."""
        ...

    async def wait(self, user_id: UUID, now: datetime, attempt_id: UUID) -> EgressPending:
        """The user's waiting record, made when missing (with `attempt_id`)."""
        ...

    async def waiting(self) -> list[EgressPending]: ...

    async def failed_attempt(self, user_id: UUID, error: str) -> None: ...

    async def claim_unnotified(self, now: datetime) -> list[EgressPending]:
        """Marks every waiting user nobody has told about yet as told, and answers them: of
        concurrent callers, each user goes to exactly one."""
        ...

    async def unclaim(self, user_ids: list[UUID]) -> None:
        """The mail did not go out: tell about them again next time."""
        ...

    async def stop_waiting(self, user_id: UUID) -> None: ...
