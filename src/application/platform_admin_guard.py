"""Anti-lockout: the platform can never lose its last administrator, and no administrator can
shut themselves out by mistake. Every admin action that removes an administrator's power
(demote, pause, delete, lock, log out everywhere) calls these inside its own unit of work."""

from uuid import UUID

from application.errors import Conflict, Forbidden
from application.ports.unit_of_work import UnitOfWork


class SelfActionForbidden(Forbidden):
    code = "self_action_forbidden"


class LastPlatformAdmin(Conflict):
    code = "last_platform_admin"


def refuse_self(actor_id: UUID, target_id: UUID, action: str) -> None:
    """An administrator cannot `action` (delete, demote, pause, lock, log out everywhere) themselves."""
    if actor_id == target_id:
        raise SelfActionForbidden(f"Administrators cannot {action} themselves: ask another administrator.")


async def keep_an_admin(uow: UnitOfWork, target_id: UUID) -> None:
    """Refuses, inside `uow` and before any change, to take the last active administrator away
    (demote, pause or delete). The set is read under its lock, held until `uow` ends, so two
    administrators demoting each other at once leave one."""
    active = await uow.platform_admins.active_locked()
    if target_id in active and len(active) <= 1:
        raise LastPlatformAdmin("This is the last active platform administrator: promote another first.")


class NoLongerAdmin(Forbidden):
    code = "not_an_admin"


async def still_an_admin(uow: UnitOfWork, actor_id: UUID) -> None:
    """Re-read inside the action's transaction (after any lock it took): an administrator demoted
    or paused a moment ago must not finish an action their session began."""
    user = await uow.users.get(actor_id)
    if user is None or user.is_suspended or await uow.platform_admins.get(actor_id) is None:
        raise NoLongerAdmin("You are no longer a platform administrator.")
