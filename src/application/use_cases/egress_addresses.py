"""Dedicated egress addresses on the admin panel (list, release, force an allocation) and the
user's own view of theirs. Every admin action is audited with what was asked and what changed."""

import ipaddress
from dataclasses import dataclass
from uuid import UUID

from application import keyset_cursor
from application.admin_actions import admin_event, require_admin_principal
from application.admin_principal import AdminPrincipal
from application.egress_ledger import EgressLedger, EgressPorts, may_hold
from application.errors import Conflict, InvalidInput, NotFound
from application.identity import RequestContext
from application.platform_admin_guard import still_an_admin
from application.ports.egress_repository import EgressSearch
from domain import egress
from domain.egress import EgressActor, EgressAddress, EgressState
from domain.text_rules import has_control_characters

_MAX_REASON = 200


def checked_address(text: str, field: str = "address") -> str:
    """A dotted IPv4 address as the ledger stores it; anything else is bad input."""
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise InvalidInput(
            f"`{field}` is not an IPv4 address.", code="invalid_address", field=field
        ) from None


def checked_state(text: str | None) -> EgressState | None:
    if text is None:
        return None
    try:
        return EgressState(text)
    except ValueError:
        known = ", ".join(s.value for s in EgressState)
        raise InvalidInput(f"`state` is one of {known}.", code="invalid_state", field="state") from None


@dataclass(frozen=True)
class EgressPage:
    addresses: list[EgressAddress]
    next_cursor: str | None


@dataclass
class ListEgressAddresses:
    ports: EgressPorts

    async def __call__(
        self,
        admin: AdminPrincipal,
        state: str | None,
        user_id: UUID | None,
        cursor: str | None,
        limit: int,
    ) -> EgressPage:
        require_admin_principal(admin)
        criteria = EgressSearch(
            limit=keyset_cursor.checked_limit(limit) + 1,
            state=checked_state(state),
            user_id=user_id,
            after=checked_address(cursor, "cursor") if cursor else None,
        )
        async with self.ports.uow() as uow:
            found = await uow.egress.search(criteria)
        page = found[:limit]
        return EgressPage(page, page[-1].address if len(found) > limit else None)


@dataclass
class ReleaseEgressAddress:
    """Starts the teardown of an allocated address (its holder loses it at once). Asking again
    while the teardown runs answers the address as it is and changes nothing."""

    ports: EgressPorts

    async def __call__(
        self, admin: AdminPrincipal, address: str, reason: str | None, ctx: RequestContext
    ) -> EgressAddress:
        require_admin_principal(admin)
        address = checked_address(address)
        why = (reason or "").strip() or "released by an administrator"
        if len(why) > _MAX_REASON or has_control_characters(why):
            raise InvalidInput(
                f"`reason` is at most {_MAX_REASON} printable characters.",
                code="invalid_reason",
                field="reason",
            )
        now = self.ports.clock.now()
        async with self.ports.uow() as uow:
            await still_an_admin(uow, admin.user_id)
            current = await uow.egress.lock(address)
            if current is None:
                raise NotFound("No such egress address.")
            if current.state in (EgressState.AVAILABLE, EgressState.RELEASED):
                raise Conflict(
                    f"This address is {current.state}: nobody holds it.", code="egress_not_allocated"
                )
            move = egress.start_teardown(current, now, EgressActor("admin", admin.user_id), why)
            if move is None:
                return current  # its teardown runs already
            if not await uow.egress.apply(move):
                raise Conflict("This address changed meanwhile: look again.", code="egress_changed")
            assert current.user_id is not None
            await uow.audit.append(
                admin_event(
                    ctx,
                    admin,
                    "admin.egress.released",
                    target_type="user",
                    target_id=current.user_id,
                    before={"address": address, "state": str(current.state), "user_id": str(current.user_id)},
                    after={"address": address, "state": str(move.after.state)},
                    request={"address": address, "reason": reason},
                )
            )
            await uow.commit()
        return move.after


class EgressPoolExhausted(Conflict):
    code = "egress_pool_exhausted"


@dataclass
class ForceEgressAllocation:
    """Allocates a paying user's address now instead of at the job's next run (the answer is
    their live address, new or not)."""

    ports: EgressPorts
    ledger: EgressLedger

    async def __call__(self, admin: AdminPrincipal, user_id: UUID, ctx: RequestContext) -> EgressAddress:
        require_admin_principal(admin)
        async with self.ports.uow() as uow:
            await still_an_admin(uow, admin.user_id)
            user = await uow.users.get(user_id)
            if user is None:
                raise NotFound("No such user.")
        refused = may_hold(user.status, user.plan, self.ports.plans)
        if refused:
            raise Conflict(f"No dedicated egress address: {refused}.", code="egress_not_eligible")
        actor = EgressActor("admin", admin.user_id)
        allocation = await self.ledger.allocate(user_id, actor, "allocation forced by an administrator")
        async with self.ports.uow() as uow:
            await uow.audit.append(
                admin_event(
                    ctx,
                    admin,
                    "admin.egress.allocate_forced",
                    target_type="user",
                    target_id=user_id,
                    after={
                        "address": None if allocation.address is None else allocation.address.address,
                        "new": allocation.new,
                        "refused": allocation.refused,
                    },
                    request={"user_id": str(user_id)},
                )
            )
            await uow.commit()
        if allocation.refused:
            raise Conflict(f"No dedicated egress address: {allocation.refused}.", code="egress_not_eligible")
        if allocation.address is None:
            raise EgressPoolExhausted(
                "The egress pool has no address: the user waits, the job retries, administrators were told."
            )
        return allocation.address


@dataclass
class MyEgressAddress:
    """The caller's own address: the live one, or the one whose teardown is cutting their
    traffic now. None when they have neither."""

    ports: EgressPorts

    async def __call__(self, user_id: UUID) -> EgressAddress | None:
        async with self.ports.uow() as uow:
            held = await uow.egress.held_by(user_id)
        shown = [a for a in held if a.state in (EgressState.ALLOCATED, EgressState.DRAINING)]
        shown.sort(key=lambda a: (a.state is EgressState.ALLOCATED, a.since))
        return shown[-1] if shown else None
