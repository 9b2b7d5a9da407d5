"""The admin panel's accounts: search, detail, pause and unpause, log out everywhere, plan.

Pausing takes effect on the next request on every worker: the user's sessions are revoked in the
database and in the revocation store (a still-valid access token is refused at once), the version
of every org they belong to is bumped (their bridges' cached keys die), and every other check
(login, refresh, bridges, the vault) reads the account's status from the database."""

import logging
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from application import keyset_cursor
from application.admin_actions import (
    AdminPanelPorts,
    admin_event,
    end_user_sessions,
    publish_ended,
    publish_versions,
    require_admin_principal,
)
from application.admin_principal import AdminPrincipal
from application.egress_ledger import EgressLedger
from application.errors import Conflict, InvalidInput, NotFound
from application.identity import RequestContext
from application.platform_admin_guard import keep_an_admin, refuse_self, still_an_admin
from application.ports.unit_of_work import UnitOfWork, UserSearch
from domain.bridges import BridgeStatus
from domain.brokers import ConnectionStatus
from domain.egress import EgressActor
from domain.orgs import Membership, Organisation
from domain.text_rules import has_control_characters
from domain.users import User, UserStatus, normalise_email

log = logging.getLogger("bulwark.admin")

_MAX_PREFIX = 320


# Pause and unpause move an account between these two only; suspended and closed stay so.
_PAUSABLE = (UserStatus.ACTIVE, UserStatus.PAUSED)


@dataclass(frozen=True)
class UserFilter:
    """As the query string gave it: checked here, so every entrypoint gets the same refusals."""

    email_prefix: str | None = None
    status: str | None = None
    plan: str | None = None
    org_id: UUID | None = None


@dataclass(frozen=True)
class UserPage:
    users: list[User]
    next_cursor: str | None


@dataclass(frozen=True)
class UserDetail:
    user: User
    paying: bool
    platform_admin: bool
    orgs: list[tuple[Membership, Organisation]]
    two_factor_enabled: bool
    live_sessions: int
    broker_connections: int
    bridges: int
    egress_address: str | None  # the live (allocated) dedicated egress address, if any
    last_login_at: datetime | None


async def _target(uow: UnitOfWork, user_id: UUID) -> User:
    user = await uow.users.get(user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


@dataclass
class ListUsers:
    ports: AdminPanelPorts

    async def __call__(
        self, admin: AdminPrincipal, criteria: UserFilter, cursor: str | None, limit: int
    ) -> UserPage:
        require_admin_principal(admin)
        search = UserSearch(
            limit=keyset_cursor.checked_limit(limit) + 1,
            email_prefix=self._prefix(criteria.email_prefix),
            status=self._status(criteria.status),
            plan=self._plan(criteria.plan),
            org_id=criteria.org_id,
            after=keyset_cursor.decode_text(cursor) if cursor else None,
        )
        async with self.ports.identity.uow() as uow:
            found = await uow.users.search(search)
        page = found[:limit]
        more = len(found) > limit
        return UserPage(page, keyset_cursor.encode(page[-1].email, page[-1].id) if more else None)

    @staticmethod
    def _prefix(prefix: str | None) -> str | None:
        if prefix is None or not prefix.strip():
            return None
        if len(prefix) > _MAX_PREFIX:
            raise InvalidInput("`email` is too long.", code="invalid_request", field="email")
        if has_control_characters(prefix):  # a NUL would reach the database (and fail there)
            raise InvalidInput(
                "`email` may not contain control characters.", code="invalid_request", field="email"
            )
        # Stored emails are canonical; so is what they are compared with (case-insensitive).
        return normalise_email(prefix)

    @staticmethod
    def _status(status: str | None) -> UserStatus | None:
        if status is None:
            return None
        try:
            return UserStatus(status)
        except ValueError:
            known = ", ".join(s.value for s in UserStatus)
            raise InvalidInput(
                f"`status` is one of {known}.", code="invalid_status", field="status"
            ) from None

    def _plan(self, plan: str | None) -> str | None:
        if plan is None:
            return None
        if not self.ports.plans.is_known(plan):
            raise UnknownPlan(self.ports.plans.plans)
        return plan


class UnknownPlan(InvalidInput):
    code = "unknown_plan"

    def __init__(self, known: tuple[str, ...]) -> None:
        super().__init__(f"`plan` is one of {', '.join(known)}.", field="plan")


@dataclass
class GetUserDetail:
    ports: AdminPanelPorts

    async def __call__(self, admin: AdminPrincipal, user_id: UUID) -> UserDetail:
        require_admin_principal(admin)
        now = self.ports.identity.clock.now()
        async with self.ports.identity.uow() as uow:
            user = await _target(uow, user_id)
            orgs = await uow.orgs.memberships_of(user_id)
            totp = await uow.mfa.get_totp(user_id)
            live = await uow.sessions.live_for_user(user_id, now)
            connections = bridges = 0
            for membership, _ in orgs:  # org-scoped rows: read org by org
                connections += sum(
                    1
                    for c in await uow.broker_connections.in_org(membership.org_id)
                    if c.created_by == user_id and c.status is not ConnectionStatus.REVOKED
                )
                bridges += sum(
                    1
                    for b in await uow.bridges.in_org(membership.org_id)
                    if b.created_by == user_id and b.status is not BridgeStatus.REVOKED
                )
            platform_admin = await uow.platform_admins.get(user_id) is not None
            last_login = await uow.sessions.last_started(user_id)
            live_egress = await uow.egress.live_for_user(user_id)
        return UserDetail(
            user=user,
            paying=self.ports.plans.is_paying(user.plan),
            platform_admin=platform_admin,
            orgs=orgs,
            two_factor_enabled=totp is not None and totp.enabled,
            live_sessions=len(live),
            broker_connections=connections,
            bridges=bridges,
            egress_address=None if live_egress is None else live_egress.address,
            last_login_at=last_login,
        )


@dataclass
class PauseUser:
    ports: AdminPanelPorts

    async def __call__(self, admin: AdminPrincipal, user_id: UUID, ctx: RequestContext) -> User:
        require_admin_principal(admin)
        refuse_self(admin.user_id, user_id, "pause")
        identity = self.ports.identity
        now = identity.clock.now()
        async with identity.uow() as uow:
            # The active-administrator set is read (and locked) before anything changes.
            await keep_an_admin(uow, user_id)
            await still_an_admin(uow, admin.user_id)
            user = await _target(uow, user_id)
            if user.status not in (UserStatus.ACTIVE, UserStatus.PAUSED):
                raise Conflict(
                    f"This account is {user.status}: it cannot be paused.", code="account_not_active"
                )
            before = str(user.status)
            if not await uow.users.set_status(user_id, UserStatus.PAUSED, now, _PAUSABLE):
                raise Conflict("This account changed meanwhile: look again.", code="account_not_active")
            user.status, user.updated_at = UserStatus.PAUSED, now
            # Again even when already paused: a retry after a store outage still ends everything.
            ended = await end_user_sessions(uow, user_id, now, "account_paused", bump_orgs=True)
            await uow.audit.append(
                admin_event(
                    ctx,
                    admin,
                    "admin.user.paused",
                    target_type="user",
                    target_id=user_id,
                    before={"status": before},
                    after={"status": str(user.status)},
                    sessions_revoked=len(ended.session_ids),
                    admin_sessions_revoked=ended.admin_sessions,
                    orgs=sorted(str(o) for o in ended.org_versions),
                )
            )
            await uow.commit()
        await publish_ended(self.ports, ended, now)
        return user


@dataclass
class UnpauseUser:
    """Lets the account log in again; the sessions the pause ended stay ended."""

    ports: AdminPanelPorts

    async def __call__(self, admin: AdminPrincipal, user_id: UUID, ctx: RequestContext) -> User:
        require_admin_principal(admin)
        identity = self.ports.identity
        now = identity.clock.now()
        async with identity.uow() as uow:
            await still_an_admin(uow, admin.user_id)
            user = await _target(uow, user_id)
            if user.status not in (UserStatus.PAUSED, UserStatus.ACTIVE):
                # Only a pause is lifted here: a suspended or closed account stays so.
                raise Conflict(f"This account is {user.status}, not paused.", code="account_not_paused")
            before = str(user.status)
            if not await uow.users.set_status(user_id, UserStatus.ACTIVE, now, _PAUSABLE):
                raise Conflict("This account changed meanwhile: look again.", code="account_not_paused")
            user.status, user.updated_at = UserStatus.ACTIVE, now
            # The bridges' cached standing names the owner as unusable: drop it everywhere.
            versions = {
                m.org_id: await uow.authz.bump_version(m.org_id)
                for m, _ in await uow.orgs.memberships_of(user_id)
            }
            await uow.audit.append(
                admin_event(
                    ctx,
                    admin,
                    "admin.user.unpaused",
                    target_type="user",
                    target_id=user_id,
                    before={"status": before},
                    after={"status": str(user.status)},
                )
            )
            await uow.commit()
        await publish_versions(self.ports, versions.items())
        identity.profiles.forget_user(user_id)
        return user


@dataclass
class LogoutUserEverywhere:
    ports: AdminPanelPorts

    async def __call__(self, admin: AdminPrincipal, user_id: UUID, ctx: RequestContext) -> int:
        """Answers how many user sessions were ended (admin sessions are ended too)."""
        require_admin_principal(admin)
        refuse_self(admin.user_id, user_id, "log out everywhere")
        identity = self.ports.identity
        now = identity.clock.now()
        async with identity.uow() as uow:
            await still_an_admin(uow, admin.user_id)
            await _target(uow, user_id)
            ended = await end_user_sessions(uow, user_id, now, "logged_out_by_admin", bump_orgs=False)
            await uow.audit.append(
                admin_event(
                    ctx,
                    admin,
                    "admin.user.logged_out_everywhere",
                    target_type="user",
                    target_id=user_id,
                    before={"live_sessions": len(ended.session_ids)},
                    after={"live_sessions": 0},
                    sessions_revoked=len(ended.session_ids),
                    admin_sessions_revoked=ended.admin_sessions,
                )
            )
            await uow.commit()
        await publish_ended(self.ports, ended, now)
        return len(ended.session_ids)


@dataclass
class SetUserPlan:
    """A plan change, then its egress consequence: becoming paying allocates a dedicated address
    (or waits for one), leaving a paying plan starts the downgrade grace. The plan change stands
    even when the egress step fails (logged); the egress job catches up."""

    ports: AdminPanelPorts
    egress: EgressLedger

    async def __call__(self, admin: AdminPrincipal, user_id: UUID, plan: str, ctx: RequestContext) -> User:
        require_admin_principal(admin)
        plans = self.ports.plans
        if not plans.is_known(plan):
            raise UnknownPlan(plans.plans)
        identity = self.ports.identity
        now = identity.clock.now()
        async with identity.uow() as uow:
            await still_an_admin(uow, admin.user_id)
            user = await _target(uow, user_id)
            if user.status is UserStatus.CLOSED:
                raise Conflict("This account is closed.", code="account_closed")
            before = {"plan": user.plan, "paying": plans.is_paying(user.plan)}
            user.plan = plan
            user.updated_at = now
            await uow.users.update(user)
            await uow.audit.append(
                admin_event(
                    ctx,
                    admin,
                    "admin.user.plan_changed",
                    target_type="user",
                    target_id=user_id,
                    before=before,
                    after={"plan": plan, "paying": plans.is_paying(plan)},
                    request={"plan": plan},
                )
            )
            await uow.commit()
        identity.profiles.forget_user(user_id)
        try:
            await self.egress.follow_plan(user_id, EgressActor("admin", admin.user_id))
        except Exception:
            log.exception("egress after the plan change of %s failed; the egress job retries", user_id)
        return user
