"""Promotion and demotion. The org administrator role and the Administrator system role are one
thing: whichever way it is asked for (the member's org role, or the role link), both move together,
under the same permission, the same audit event and the same last-administrator rule."""

from datetime import datetime
from uuid import UUID

from application.errors import Conflict, NotFound
from application.identity import RequestContext
from application.org_authority import OrgActor
from application.ports.unit_of_work import UnitOfWork
from domain.orgs import Membership, OrgRole
from domain.permissions import ADMINISTRATOR_ROLE_ID


class LastAdministrator(Conflict):
    """An organisation must keep at least one administrator."""

    code = "last_administrator"


async def set_administrator(
    uow: UnitOfWork,
    actor: OrgActor,
    user_id: UUID,
    make_administrator: bool,
    now: datetime,
    ctx: RequestContext,
) -> tuple[Membership, int | None]:
    """Answers the membership and the new authorization version (None when nothing changed).
    The caller has locked the org (`authorize`), so counting administrators here is safe."""
    actor.require("members:update")
    actor.require_administrator()
    org_id = actor.membership.org_id
    membership = await uow.authz.membership(org_id, user_id)
    if membership is None:
        raise NotFound("No such member.")
    before = membership.role
    wanted = OrgRole.ADMINISTRATOR if make_administrator else OrgRole.MEMBER
    holds_role = ADMINISTRATOR_ROLE_ID in await uow.authz.member_role_ids(org_id, user_id)
    if before is wanted and holds_role is make_administrator:
        return membership, None
    if (
        before is OrgRole.ADMINISTRATOR
        and not make_administrator
        and await uow.authz.administrators(org_id) <= 1
    ):
        raise LastAdministrator()
    await uow.authz.set_org_role(org_id, user_id, wanted)
    if make_administrator:
        await uow.authz.assign_member_role(org_id, user_id, ADMINISTRATOR_ROLE_ID, now)
    else:
        await uow.authz.unassign_member_role(org_id, user_id, ADMINISTRATOR_ROLE_ID)
    version = await uow.authz.bump_version(org_id)
    await uow.audit.append(
        ctx.event(
            "member.org_role_changed",
            actor=actor.user_id,
            org=org_id,
            target_type="user",
            target_id=user_id,
            before={"org_role": str(before)},
            after={"org_role": str(wanted)},
        )
    )
    membership.role = wanted
    return membership, version
