"""What the admin panel's use cases share: their ports, the audit event every admin action
writes, and ending a user's standing on every worker at once."""

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from application.admin_principal import AdminPrincipal
from application.errors import NotAuthenticated
from application.identity import IdentityDeps, RequestContext
from application.ports.authz_cache import AuthzVersions
from application.ports.unit_of_work import UnitOfWork
from application.use_cases.session_tokens import revoke_in_store
from domain.audit import ActorKind, AuditEvent
from domain.plans import PlanCatalog

log = logging.getLogger("bulwark.admin")


@dataclass
class AdminPanelPorts:
    identity: IdentityDeps  # storage, clock, the revocation store, the profile cache
    versions: AuthzVersions  # orgs' authorization versions: cached permissions and bridge keys
    plans: PlanCatalog


def require_admin_principal(admin: object) -> AdminPrincipal:
    """Every admin-panel use case runs for a live admin session only (its entrypoint checked the
    session; this keeps a caller that forgot from running one for anybody else)."""
    if not isinstance(admin, AdminPrincipal):
        raise NotAuthenticated("This needs an admin session.", code="invalid_admin_session")
    return admin


def admin_event(
    ctx: RequestContext,
    admin: AdminPrincipal,
    action: str,
    *,
    target_type: str,
    target_id: UUID,
    org: UUID | None = None,
    before: dict[str, object] | None = None,
    after: dict[str, object] | None = None,
    **details: object,
) -> AuditEvent:
    """Who (the administrator and their admin session), what, to what, with the state before and
    after; the request context adds the source IP and user agent, the log the time."""
    return ctx.event(
        action,
        actor=admin.user_id,
        actor_kind=ActorKind.ADMIN,
        org=org,
        target_type=target_type,
        target_id=target_id,
        admin_session=admin.session_id,
        before=before or {},
        after=after or {},
        **details,
    )


@dataclass(frozen=True)
class EndedSessions:
    """What a transaction that ended a user's sessions leaves for after its commit."""

    user_id: UUID
    session_ids: list[UUID]
    admin_sessions: int
    org_versions: dict[UUID, int]  # bumped in the same transaction


async def end_user_sessions(
    uow: UnitOfWork, user_id: UUID, now: datetime, reason: str, *, bump_orgs: bool
) -> EndedSessions:
    """Inside the caller's transaction: every session of the user (user and admin ones) revoked,
    and, when asked, the version of every org they belong to bumped so whatever is cached against
    it (permissions, their bridges' keys) is stale on every worker."""
    ids = await uow.sessions.revoke_all_for_user(user_id, now, reason)
    admin_sessions = await uow.platform_admins.revoke_sessions_of(user_id, now, reason)
    versions: dict[UUID, int] = {}
    if bump_orgs:
        for membership, _ in await uow.orgs.memberships_of(user_id):
            versions[membership.org_id] = await uow.authz.bump_version(membership.org_id)
    return EndedSessions(user_id, ids, admin_sessions, versions)


async def publish_ended(ports: AdminPanelPorts, ended: EndedSessions, now: datetime) -> None:
    """After the commit: tell every worker. A store that is down only means the database answers
    (bearer checks fall back to it when the store is degraded), never that a token is accepted."""
    identity = ports.identity
    await revoke_in_store(identity, ended.session_ids, now + identity.policy.session_absolute)
    try:
        # Also refuses a session a login in flight started after the revocation above.
        await identity.revocations.set_user_not_before(ended.user_id, now.replace(microsecond=0))
    except Exception:
        log.error("revocation store unavailable; user %s is refused by the database only", ended.user_id)
    await publish_versions(ports, ended.org_versions.items())
    identity.profiles.forget_user(ended.user_id)


async def publish_versions(ports: AdminPanelPorts, versions: Iterable[tuple[UUID, int]]) -> None:
    for org_id, version in versions:
        try:
            await ports.versions.bump(org_id, version)
        except Exception:
            log.error("authorization version store unavailable; org %s relies on the database", org_id)
