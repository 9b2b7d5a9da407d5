"""The admin panel's organisations: list, detail, disable and enable. Disabling revokes every
session in the org at once (and, by the version bump, its bridges' cached keys); enabling does
not bring those sessions back."""

import logging
from dataclasses import dataclass
from uuid import UUID

from application import keyset_cursor
from application.admin_actions import AdminPanelPorts, admin_event, publish_versions, require_admin_principal
from application.admin_principal import AdminPrincipal
from application.errors import NotFound
from application.identity import RequestContext
from application.platform_admin_guard import still_an_admin
from application.ports.unit_of_work import OrgPage
from application.use_cases.session_tokens import revoke_in_store
from domain.orgs import Organisation, OrgStatus

log = logging.getLogger("bulwark.admin")


@dataclass(frozen=True)
class OrgListing:
    orgs: list[Organisation]
    next_cursor: str | None


@dataclass(frozen=True)
class OrgOverview:
    org: Organisation
    members: int


@dataclass
class ListOrgs:
    """Every organisation, oldest first: (created_at, id) order."""

    ports: AdminPanelPorts

    async def __call__(self, admin: AdminPrincipal, cursor: str | None, limit: int) -> OrgListing:
        require_admin_principal(admin)
        page = OrgPage(
            limit=keyset_cursor.checked_limit(limit) + 1,
            after=keyset_cursor.decode_instant(cursor) if cursor else None,
        )
        async with self.ports.identity.uow() as uow:
            found = await uow.orgs.page(page)
        orgs = found[:limit]
        more = len(found) > limit
        last = orgs[-1] if orgs else None
        cursor_out = keyset_cursor.encode(last.created_at.isoformat(), last.id) if more and last else None
        return OrgListing(orgs, cursor_out)


@dataclass
class GetOrgOverview:
    ports: AdminPanelPorts

    async def __call__(self, admin: AdminPrincipal, org_id: UUID) -> OrgOverview:
        require_admin_principal(admin)
        async with self.ports.identity.uow() as uow:
            org = await uow.orgs.get(org_id)
            if org is None:
                raise NotFound("No such organisation.")
            return OrgOverview(org, await uow.orgs.member_count(org_id))


@dataclass
class SetOrgStatus:
    ports: AdminPanelPorts

    async def __call__(
        self, admin: AdminPrincipal, org_id: UUID, status: OrgStatus, ctx: RequestContext
    ) -> Organisation:
        require_admin_principal(admin)
        identity = self.ports.identity
        now = identity.clock.now()
        async with identity.uow() as uow:
            await still_an_admin(uow, admin.user_id)
            org = await uow.orgs.get(org_id)
            if org is None:
                raise NotFound("No such organisation.")
            before = str(org.status)
            org.status = status
            await uow.orgs.update(org)
            # Whatever is cached against the org's version (permissions, bridge keys) is stale now.
            version = await uow.authz.bump_version(org_id)
            revoked = (
                await uow.sessions.revoke_all_for_org(org_id, now, "org_disabled")
                if status is OrgStatus.DISABLED
                else []
            )
            await uow.audit.append(
                admin_event(
                    ctx,
                    admin,
                    f"org.{'disabled' if status is OrgStatus.DISABLED else 'enabled'}",
                    org=org_id,
                    target_type="org",
                    target_id=org_id,
                    before={"status": before},
                    after={"status": str(status)},
                    sessions_revoked=len(revoked),
                )
            )
            await uow.commit()
        identity.profiles.clear()
        await publish_versions(self.ports, [(org_id, version)])
        if status is OrgStatus.DISABLED:
            try:
                await identity.revocations.set_org_not_before(org_id, now)
            except Exception:
                log.error(
                    "revocation store unavailable; org %s sessions are revoked in the database only", org_id
                )
            await revoke_in_store(identity, revoked, now + identity.policy.session_absolute)
        return org
