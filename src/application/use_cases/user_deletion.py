"""A platform administrator deleting an account, in two steps: a confirmation token bound to the
administrator, the target and the summary shown (five minutes, single use), then the deletion,
which runs the account closure pipeline. Any refusal changes nothing."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from application.account_closure import ClosurePipeline, OrgHandoverRequired, handover_blockers, open_closure
from application.errors import InvalidInput, NotAuthenticated, NotFound
from application.identity import RequestContext
from application.platform_admin_guard import keep_an_admin, refuse_self
from application.ports.clock import Clock
from application.ports.unit_of_work import UnitOfWork, UnitOfWorkFactory
from application.use_cases.admin_login import AdminPrincipal
from application.use_cases.session_tokens import new_secret_token
from domain.account_closure import DELETION_TOKEN_TTL, ClosureRequester, DeletionToken, summary_digest
from domain.audit import ActorKind
from domain.bridges import BridgeStatus
from domain.brokers import ConnectionStatus
from domain.sessions import token_digest
from domain.users import UserStatus

_TOKEN_MAX = 200


class InvalidConfirmationToken(InvalidInput):
    """The confirmation token is missing, wrong, expired, used, or not for this account."""

    code = "invalid_confirmation_token"

    def __init__(self) -> None:
        super().__init__(
            "The confirmation token is missing, wrong, expired, already used, or not for this account: "
            "ask for a new one.",
            field="confirmation_token",
        )


class DeletionSummaryChanged(InvalidInput):
    code = "deletion_summary_changed"


@dataclass
class UserDeletionPorts:
    uow: UnitOfWorkFactory
    clock: Clock
    pipeline: ClosurePipeline


@dataclass(frozen=True)
class IssuedDeletionToken:
    token: str  # shown once; only its digest is stored
    expires_at: datetime
    summary: dict[str, Any]  # what the administrator confirms: personal data for their eyes only


async def _require_admin(uow: UnitOfWork, admin: AdminPrincipal) -> None:
    """The session was checked on the way in; the standing is checked again in this transaction."""
    user = await uow.users.get(admin.user_id)
    if user is None or user.is_suspended or await uow.platform_admins.get(admin.user_id) is None:
        raise NotAuthenticated("This endpoint needs an admin session: POST /api/admin/v1/login.")


async def deletion_summary(uow: UnitOfWork, target_id: uuid.UUID, now: datetime) -> dict[str, Any]:
    user = await uow.users.get(target_id)
    if user is None or user.status is UserStatus.CLOSED:
        raise NotFound("No such account.")
    orgs, bridges, connections = [], 0, 0
    for membership, org in await uow.orgs.memberships_of(target_id):
        orgs.append({"id": str(org.id), "name": org.name, "role": str(membership.role)})
        bridges += sum(
            1
            for b in await uow.bridges.in_org(org.id)
            if b.created_by == target_id and b.status is not BridgeStatus.REVOKED
        )
        connections += sum(
            1
            for c in await uow.broker_connections.in_org(org.id)
            if c.created_by == target_id and c.status is not ConnectionStatus.REVOKED
        )
    return {
        "user_id": str(user.id),
        "email": user.email,
        "display_name": user.display_name,
        "status": str(user.status),
        "platform_administrator": await uow.platform_admins.get(user.id) is not None,
        "orgs": sorted(orgs, key=lambda o: o["id"]),
        "live_sessions": len(await uow.sessions.live_for_user(target_id, now)),
        "bridges": bridges,
        "broker_connections": connections,
    }


def _audited(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary as the audit log keeps it: ids, roles and counts, no email or names."""
    return {
        "status": summary["status"],
        "platform_administrator": summary["platform_administrator"],
        "orgs": [{"id": o["id"], "role": o["role"]} for o in summary["orgs"]],
        "live_sessions": summary["live_sessions"],
        "bridges": summary["bridges"],
        "broker_connections": summary["broker_connections"],
    }


@dataclass
class IssueUserDeletionToken:
    ports: UserDeletionPorts

    async def __call__(
        self, admin: AdminPrincipal, target_id: uuid.UUID, ctx: RequestContext
    ) -> IssuedDeletionToken:
        refuse_self(admin.user_id, target_id, "delete")
        now = self.ports.clock.now()
        raw = new_secret_token()
        async with self.ports.uow() as uow:
            await _require_admin(uow, admin)
            summary = await deletion_summary(uow, target_id, now)
            await keep_an_admin(uow, target_id)
            blocking = await handover_blockers(uow, target_id)
            if blocking:
                raise OrgHandoverRequired(blocking)
            token = DeletionToken(
                token_hash=token_digest(raw),
                admin_id=admin.user_id,
                target_id=target_id,
                summary_digest=summary_digest(summary),
                created_at=now,
                expires_at=now + DELETION_TOKEN_TTL,
            )
            await uow.deletion_tokens.add(token)
            await uow.audit.append(
                ctx.event(
                    "admin.user_deletion_token_issued",
                    actor=admin.user_id,
                    actor_kind=ActorKind.ADMIN,
                    target_type="user",
                    target_id=target_id,
                    admin_session=admin.session_id,
                    expires_at=token.expires_at.isoformat(),
                    summary_digest=token.summary_digest,
                    summary=_audited(summary),
                )
            )
            await uow.commit()
        return IssuedDeletionToken(raw, token.expires_at, summary)


@dataclass
class DeleteUser:
    ports: UserDeletionPorts

    async def __call__(
        self, admin: AdminPrincipal, target_id: uuid.UUID, raw_token: str | None, ctx: RequestContext
    ) -> None:
        if not raw_token or len(raw_token) > _TOKEN_MAX:
            raise InvalidConfirmationToken()
        refuse_self(admin.user_id, target_id, "delete")
        now = self.ports.clock.now()
        async with self.ports.uow() as uow:
            await _require_admin(uow, admin)
            token = await uow.deletion_tokens.get(token_digest(raw_token))
            if (
                token is None
                or token.admin_id != admin.user_id
                or token.target_id != target_id
                or not token.usable(now)
            ):
                raise InvalidConfirmationToken()
            await keep_an_admin(uow, target_id)
            summary = await deletion_summary(uow, target_id, now)
            if summary_digest(summary) != token.summary_digest:
                raise DeletionSummaryChanged(
                    "The account changed since its summary was shown: ask for a new confirmation token.",
                    field="confirmation_token",
                )
            blocking = await handover_blockers(uow, target_id)
            if blocking:
                raise OrgHandoverRequired(blocking)
            if not await uow.deletion_tokens.consume(token.token_hash, now):
                raise InvalidConfirmationToken()  # a concurrent request used it first
            user = await uow.users.get(target_id)
            if user is None:
                raise NotFound("No such account.")
            versions = await open_closure(uow, user, admin.user_id, ClosureRequester.ADMIN, now)
            await uow.audit.append(
                ctx.event(
                    "admin.user_deleted",
                    actor=admin.user_id,
                    actor_kind=ActorKind.ADMIN,
                    target_type="user",
                    target_id=target_id,
                    admin_session=admin.session_id,
                    summary_digest=token.summary_digest,
                    before=_audited(summary),
                    after={"status": str(UserStatus.CLOSED), "closure": "requested"},
                )
            )
            await uow.commit()
        await self.ports.pipeline.requested(target_id, versions)
        await self.ports.pipeline.run_now(target_id)
