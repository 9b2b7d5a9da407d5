"""The account closure pipeline, shared by a user closing their own account and a platform
administrator deleting one.

The request commits first (an `account_closures` row, the account CLOSED at once, so nothing else
can happen to it meanwhile); then each step runs in its own transaction and records that it is
done. Every step is idempotent, so a crash anywhere resumes on the next run (`bulwark jobs run`
or the in-process scheduler) by redoing at most the step it was in."""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from application.bridge_keys import BridgeKeys
from application.egress_ledger import start_teardown_of
from application.errors import Conflict
from application.ports.authz_cache import AuthzVersions
from application.ports.clock import Clock
from application.ports.revocation_store import RevocationStore
from application.ports.unit_of_work import UnitOfWork, UnitOfWorkFactory
from application.profile_cache import ProfileCache
from domain.account_closure import (
    CLOSED_ORG_NAME,
    AccountClosure,
    ClosureRequester,
    ClosureStep,
    erased_email,
    steps_after,
)
from domain.audit import ActorKind, AuditEvent
from domain.bridges import BridgeStatus
from domain.brokers import ConnectionStatus
from domain.egress import SYSTEM
from domain.orgs import Organisation, OrgRole, OrgStatus
from domain.users import User, UserStatus

log = logging.getLogger("bulwark.closure")

OrgVersions = list[tuple[UUID, int]]


class OrgHandoverRequired(Conflict):
    """The account is the last administrator of an org with other members: hand over first."""

    code = "org_handover_required"

    def __init__(self, orgs: list[Organisation]) -> None:
        named = ", ".join(f"{org.name} ({org.id})" for org in orgs)
        super().__init__(f"Make another member an administrator first in: {named}.")
        self.problem_fields = {"orgs": [{"id": str(org.id), "name": org.name} for org in orgs]}


async def handover_blockers(uow: UnitOfWork, user_id: UUID) -> list[Organisation]:
    """The orgs that would be left with members but no administrator if this account went."""
    blocking = []
    for membership, org in await uow.orgs.memberships_of(user_id):
        if membership.role is not OrgRole.ADMINISTRATOR:
            continue
        if await uow.authz.administrators(org.id) <= 1 and len(await uow.authz.members(org.id)) > 1:
            blocking.append(org)
    return blocking


async def open_closure(
    uow: UnitOfWork, user: User, requested_by: UUID, kind: ClosureRequester, now: datetime
) -> OrgVersions:
    """Inside the caller's unit of work: records the request and closes the account at once.
    Every org of the account gets a new authorization version (cached permissions and bridge keys
    of its members die): publish them with `ClosurePipeline.requested` after commit."""
    await uow.account_closures.add(AccountClosure(user.id, now, requested_by, kind))
    open_statuses = (UserStatus.ACTIVE, UserStatus.PAUSED, UserStatus.SUSPENDED)
    if not await uow.users.set_status(user.id, UserStatus.CLOSED, now, open_statuses):
        raise Conflict("This account is closed already.", code="account_closed")
    user.status = UserStatus.CLOSED
    return [
        (org.id, await uow.authz.bump_version(org.id)) for _, org in await uow.orgs.memberships_of(user.id)
    ]


def _system_event(action: str, user_id: UUID, org_id: UUID | None = None, **details: object) -> AuditEvent:
    """What the pipeline does, in the audit log: ids and counts, never personal data."""
    return AuditEvent(
        action=action,
        actor_kind=ActorKind.SYSTEM,
        org_id=org_id,
        target_type="user",
        target_id=str(user_id),
        details={"reason": "account_closed", **details},
    )


@dataclass
class ClosurePorts:
    uow: UnitOfWorkFactory
    clock: Clock
    revocations: RevocationStore
    org_versions: AuthzVersions
    bridge_keys: BridgeKeys
    profiles: ProfileCache[Any]
    # A revoked session's entry in the store outlives its last possible access token.
    revocation_keep: timedelta = timedelta(days=31)


# Called after each step's work and before it is recorded (tests inject crashes here).
StepHook = Callable[[ClosureStep], Awaitable[None]]


async def _no_hook(_: ClosureStep) -> None:
    return None


@dataclass
class ClosurePipeline:
    ports: ClosurePorts
    after_step: StepHook = field(default=_no_hook)

    async def requested(self, user_id: UUID, versions: OrgVersions) -> None:
        """After the request's commit: every worker learns at once that the account is gone."""
        self.ports.profiles.forget_user(user_id)
        await self._publish(versions)
        try:
            await self.ports.revocations.set_user_not_before(user_id, self.ports.clock.now())
        except Exception:
            log.error("revocation store unavailable; closed account %s relies on the database", user_id)

    async def run_now(self, user_id: UUID) -> bool:
        """Runs the pipeline right after a request; a failure leaves it to the jobs runner."""
        try:
            return await self.run(user_id)
        except Exception:
            log.exception("closure of %s stopped; `bulwark jobs run` or the scheduler resumes it", user_id)
            return False

    async def run(self, user_id: UUID) -> bool:
        """Resumes the closure from the last step recorded; True when this run finished it."""
        async with self.ports.uow() as uow:
            closure = await uow.account_closures.get(user_id)
        if closure is None or closure.finished:
            return False
        for step in steps_after(closure.step_reached):
            await self._step(step, user_id)
            await self.after_step(step)
            async with self.ports.uow() as uow:
                await uow.account_closures.advance(user_id, step)
                await uow.commit()
        return await self._finish(closure)

    async def _step(self, step: ClosureStep, user_id: UUID) -> None:
        if step is ClosureStep.SESSIONS_REVOKED:
            await self._revoke_sessions(user_id)
        elif step is ClosureStep.BRIDGES_STOPPED:
            await self._stop_bridges(user_id)
        elif step is ClosureStep.BROKER_CREDENTIALS_DESTROYED:
            await self._destroy_broker_credentials(user_id)
        elif step is ClosureStep.EGRESS_RELEASED:
            await self._start_egress_teardown(user_id)
        elif step is ClosureStep.MEMBERSHIPS_REMOVED:
            await self._remove_memberships(user_id)
        elif step is ClosureStep.PERSONAL_DATA_ERASED:
            await self._erase_personal_data(user_id)

    async def _revoke_sessions(self, user_id: UUID) -> None:
        ports = self.ports
        now = ports.clock.now()
        async with ports.uow() as uow:
            ids = await uow.sessions.revoke_all_for_user(user_id, now, "account_closed")
            admin_sessions = await uow.platform_admins.revoke_sessions_of(user_id, now, "account_closed")
            if ids or admin_sessions:
                await uow.audit.append(
                    _system_event(
                        "session.revoked_all",
                        user_id,
                        sessions_revoked=len(ids),
                        admin_sessions=admin_sessions,
                    )
                )
            await uow.commit()
        # The store makes live access tokens die on every worker; the database already refuses them.
        try:
            await ports.revocations.set_user_not_before(user_id, now)
            for session_id in ids:
                await ports.revocations.revoke_session(session_id, now + ports.revocation_keep)
        except Exception:
            log.error("revocation store unavailable; closed account %s relies on the database", user_id)

    async def _stop_bridges(self, user_id: UUID) -> None:
        now = self.ports.clock.now()
        stopped: list[tuple[UUID, int]] = []
        async with self.ports.uow() as uow:
            for _, org in await uow.orgs.memberships_of(user_id):
                for bridge in await uow.bridges.in_org(org.id):
                    if bridge.created_by != user_id:
                        continue
                    # The address it was last called from, and its last figures, are theirs.
                    await uow.bridges.forget_last_seen(org.id, bridge.id)
                    if bridge.status is BridgeStatus.REVOKED:
                        continue
                    revoked = await uow.bridges.set_status(org.id, bridge.id, BridgeStatus.REVOKED, now)
                    if revoked is None:
                        continue
                    stopped.append((bridge.id, revoked.version))
                    await uow.audit.append(
                        _system_event("bridge.revoked", user_id, org.id, bridge_id=str(bridge.id))
                    )
            await uow.commit()
        for bridge_id, version in stopped:
            await self.ports.bridge_keys.changed(bridge_id, version)

    async def _destroy_broker_credentials(self, user_id: UUID) -> None:
        now = self.ports.clock.now()
        async with self.ports.uow() as uow:
            for _, org in await uow.orgs.memberships_of(user_id):
                for connection in await uow.broker_connections.in_org(org.id):
                    if connection.created_by != user_id or connection.status is ConnectionStatus.REVOKED:
                        continue
                    if await uow.broker_connections.revoke(org.id, connection.id, now):
                        await uow.audit.append(
                            _system_event(
                                "broker_connection.revoked", user_id, org.id, connection_id=str(connection.id)
                            )
                        )
            await uow.commit()

    async def _start_egress_teardown(self, user_id: UUID) -> None:
        """The address stops being the account's live binding at once (the gateway's next
        admission refuses it); the egress job detaches it, cools it down and frees it."""
        async with self.ports.uow() as uow:
            moves = await start_teardown_of(uow, user_id, self.ports.clock.now(), SYSTEM, "account closed")
            for move in moves:
                await uow.audit.append(
                    _system_event("egress.teardown_started", user_id, address=move.after.address)
                )
            await uow.commit()

    async def _remove_memberships(self, user_id: UUID) -> None:
        versions: OrgVersions = []
        async with self.ports.uow() as uow:
            for membership, org in await uow.orgs.memberships_of(user_id):
                await uow.authz.remove_member(org.id, user_id)
                versions.append((org.id, await uow.authz.bump_version(org.id)))
                await uow.audit.append(
                    _system_event(
                        "member.removed", user_id, org.id, before={"org_role": str(membership.role)}
                    )
                )
            await uow.commit()
        await self._publish(versions)

    async def _erase_personal_data(self, user_id: UUID) -> None:
        now = self.ports.clock.now()
        versions: OrgVersions = []
        async with self.ports.uow() as uow:
            user = await uow.users.get(user_id)
            org = await uow.orgs.get(user.default_org_id) if user and user.default_org_id else None
            # The personal org is named after its holder; left without members, it goes too.
            if org is not None and org.personal and not await uow.authz.members(org.id):
                org.name = CLOSED_ORG_NAME
                org.status = OrgStatus.DISABLED
                await uow.orgs.update(org)
                versions.append((org.id, await uow.authz.bump_version(org.id)))
            await uow.account_closures.erase_personal_data(user_id, erased_email(user_id), now)
            await uow.commit()
        self.ports.profiles.forget_user(user_id)
        await self._publish(versions)

    async def _finish(self, closure: AccountClosure) -> bool:
        async with self.ports.uow() as uow:
            finished = await uow.account_closures.finish(closure.user_id, self.ports.clock.now())
            if finished:
                await uow.audit.append(
                    AuditEvent(
                        action="account.closed",
                        actor_kind=ActorKind.SYSTEM,
                        target_type="user",
                        target_id=str(closure.user_id),
                        details={
                            "requested_by": str(closure.requested_by),
                            "requested_by_kind": str(closure.requested_by_kind),
                            "requested_at": closure.requested_at.isoformat(),
                        },
                    )
                )
            await uow.commit()
        return finished

    async def _publish(self, versions: OrgVersions) -> None:
        for org_id, version in versions:
            try:
                await self.ports.org_versions.bump(org_id, version)
            except Exception:
                log.error("authorization version store unavailable; org %s relies on the database", org_id)


@dataclass
class ResumeAccountClosures:
    """`bulwark jobs run` and the in-process scheduler: every unfinished closure, resumed."""

    pipeline: ClosurePipeline

    async def __call__(self) -> int:
        async with self.pipeline.ports.uow() as uow:
            pending = await uow.account_closures.unfinished()
        finished = 0
        for closure in pending:
            try:
                finished += await self.pipeline.run(closure.user_id)
            except Exception:
                log.exception("closure of %s stopped again; the next run resumes it", closure.user_id)
        return finished
