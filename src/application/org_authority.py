"""What the acting member may do in their org, decided inside the unit of work that makes the change.

Every use case that changes who holds what calls `authorize` first, whoever calls it (an HTTP route,
the CLI, a later admin API): the route guards are only a cheap first filter. The org's row is
locked before the actor's rights are read, so a change and the rights it was judged against cannot
be moved apart by a concurrent change in the same org.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from application.authorization import load_effective, same_org
from application.errors import Forbidden, NotFound
from application.ports.unit_of_work import UnitOfWork
from application.use_cases.sessions import Principal
from domain.orgs import Membership, OrgRole
from domain.permissions import ADMINISTRATOR_ROLE_ID
from domain.roles import Permission


def _listed(permissions: Iterable[Permission | str]) -> str:
    names = sorted({str(p) for p in permissions})
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")


@dataclass(frozen=True)
class OrgActor:
    """The member acting, with the rights they hold at this moment of the transaction."""

    principal: Principal
    membership: Membership
    held: frozenset[Permission]

    @property
    def user_id(self) -> UUID:
        return self.principal.user_id

    @property
    def is_administrator(self) -> bool:
        return self.membership.role is OrgRole.ADMINISTRATOR

    def require(self, permission: str) -> None:
        if permission not in {str(p) for p in self.held}:
            raise Forbidden(f"This needs the `{permission}` permission.", code="permission_denied")

    def require_administrator(self) -> None:
        if not self.is_administrator:
            raise Forbidden("Only an organisation administrator may do this.", code="org_admin_required")

    def ensure_holds(self, touched: Iterable[Permission]) -> None:
        """Granting and taking away follow one rule: a change may only give, remove or alter
        permissions the actor holds themself (else one admin-area permission is a ladder, or a
        way to strip an administrator)."""
        beyond = set(touched) - self.held
        if beyond:
            raise Forbidden(
                f"You cannot grant or take away permissions you do not hold: {_listed(beyond)}",
                code="grant_exceeds_own",
            )

    def ensure_may_move_administrator(self, role_ids: Iterable[UUID]) -> None:
        """Only administrators give or take the Administrator role, directly or through a group."""
        if ADMINISTRATOR_ROLE_ID in set(role_ids):
            self.require_administrator()


async def authorize(
    uow: UnitOfWork, principal: Principal, org_id: UUID, permission: str | None = None
) -> OrgActor:
    """Locks the org, then reads the actor's membership and rights in this transaction."""
    same_org(principal, org_id)
    await uow.orgs.lock(org_id)
    membership = await uow.authz.membership(org_id, principal.user_id)
    if membership is None:
        raise NotFound("No such organisation.")
    effective = await load_effective(uow, org_id, principal.user_id)
    actor = OrgActor(principal, membership, effective.permissions)
    if permission is not None:
        actor.require(permission)
    return actor
