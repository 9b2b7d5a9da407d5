"""Organisations: create, list, read, change settings, switch (platform administrators disable
them from the admin panel: use_cases/admin_orgs)."""

import logging
import uuid
from dataclasses import dataclass

from application.authorization import AuthzDeps, PermissionResolver, same_org
from application.errors import Forbidden, NotFound
from application.identity import RequestContext
from application.org_authority import authorize
from application.ports.token_issuer import IssuedToken
from application.text_input import validated_text
from application.use_cases.login import has_second_factor, require_second_factor_for
from application.use_cases.session_tokens import new_secret_token
from application.use_cases.sessions import Principal
from domain.orgs import Membership, Organisation, OrgRole
from domain.permissions import SYSTEM_ROLE_IDS, SystemRole
from domain.sessions import RefreshToken, token_digest

log = logging.getLogger("bulwark.orgs")


def valid_org_name(name: str) -> str:
    return validated_text(name, "name", "Organisation names", 200)


@dataclass
class OrgUseCase:
    deps: AuthzDeps

    @property
    def resolver(self) -> PermissionResolver:
        return PermissionResolver(self.deps)


class CreateOrg(OrgUseCase):
    async def __call__(self, principal: Principal, name: str, ctx: RequestContext) -> Organisation:
        identity = self.deps.identity
        now = identity.clock.now()
        org = Organisation(id=uuid.uuid4(), name=valid_org_name(name), created_at=now)
        async with identity.uow() as uow:
            await uow.orgs.add(org)
            await uow.orgs.add_membership(Membership(org.id, principal.user_id, OrgRole.ADMINISTRATOR, now))
            await uow.authz.assign_member_role(
                org.id, principal.user_id, SYSTEM_ROLE_IDS[SystemRole.ADMINISTRATOR], now
            )
            await uow.audit.append(
                ctx.event(
                    "org.created",
                    actor=principal.user_id,
                    org=org.id,
                    target_type="org",
                    target_id=org.id,
                    after={"name": org.name},
                )
            )
            await uow.commit()
        identity.profiles.forget_user(principal.user_id)
        return org


class ListMyOrgs(OrgUseCase):
    async def __call__(self, principal: Principal) -> list[tuple[Membership, Organisation]]:
        async with self.deps.identity.uow() as uow:
            return await uow.orgs.memberships_of(principal.user_id)


class GetOrg(OrgUseCase):
    async def __call__(self, principal: Principal, org_id: uuid.UUID) -> Organisation:
        same_org(principal, org_id)
        async with self.deps.identity.uow() as uow:
            org = await uow.orgs.get(org_id)
            if org is None or await uow.authz.membership(org_id, principal.user_id) is None:
                raise NotFound("No such organisation.")
        return org


class UpdateOrg(OrgUseCase):
    async def __call__(
        self,
        principal: Principal,
        org_id: uuid.UUID,
        name: str | None,
        require_2fa: bool | None,
        ctx: RequestContext,
        trust_sso_mfa: bool | None = None,
    ) -> Organisation:
        new_name = valid_org_name(name) if name is not None else None
        async with self.deps.identity.uow() as uow:
            await authorize(uow, principal, org_id, "org_settings:update")
            org = await uow.orgs.get(org_id)
            if org is None:
                raise NotFound("No such organisation.")
            before: dict[str, object] = {"name": org.name, "require_2fa": org.require_2fa}
            after: dict[str, object] = {}
            if trust_sso_mfa is not None:
                before["trust_sso_mfa"] = org.trust_sso_mfa
                org.trust_sso_mfa = trust_sso_mfa
                after["trust_sso_mfa"] = trust_sso_mfa
            if new_name is not None:
                org.name = new_name
            if require_2fa is not None:
                org.require_2fa = require_2fa
            await uow.orgs.update(org)
            await uow.audit.append(
                ctx.event(
                    "org.updated",
                    actor=principal.user_id,
                    org=org_id,
                    target_type="org",
                    target_id=org_id,
                    before=before,
                    after={"name": org.name, "require_2fa": org.require_2fa, **after},
                )
            )
            await uow.commit()
        self.deps.identity.profiles.clear()  # every member's /me shows the name
        return org


@dataclass(frozen=True)
class SwitchResult:
    access: IssuedToken
    refresh_token: str


class SwitchOrg(OrgUseCase):
    """Moves the session to another org of the user's: a new access token, and the refresh chain
    restarts with a fresh token for the new org (the old ones stop working)."""

    async def __call__(self, principal: Principal, org_id: uuid.UUID, ctx: RequestContext) -> SwitchResult:
        identity = self.deps.identity
        now = identity.clock.now()
        async with identity.uow() as uow:
            org = await uow.orgs.get(org_id)
            membership = await uow.authz.membership(org_id, principal.user_id) if org else None
            if org is None or membership is None:
                raise NotFound("No such organisation.")
            if org.is_disabled:
                raise Forbidden("That organisation is disabled.", code="org_disabled")
            if org.require_2fa and not await has_second_factor(uow, principal.user_id):
                raise require_second_factor_for(org)
            session = await uow.sessions.get(principal.session_id)
            user = await uow.users.get(principal.user_id)
            if session is None or user is None or not session.is_live(now):
                raise NotFound("No such session.")
            before = session.org_id
            session.org_id = org_id
            session.touched(now, identity.policy.session_idle)
            moved = await uow.sessions.amend(
                session.id, org_id=org_id, last_used_at=now, idle_expires_at=session.idle_expires_at
            )
            if not moved:
                raise NotFound("No such session.")
            await uow.sessions.retire_refresh_tokens(session.id, now)
            raw = new_secret_token()
            await uow.sessions.add_refresh_token(RefreshToken(token_digest(raw), session.id, now))
            await uow.audit.append(
                ctx.event(
                    "org.switched",
                    actor=principal.user_id,
                    org=org_id,
                    target_type="session",
                    target_id=session.id,
                    before={"org_id": str(before)},
                    after={"org_id": str(org_id)},
                )
            )
            await uow.commit()
        access = identity.tokens.issue(
            sub=user.id,
            sid=session.id,
            org=org_id,
            prole=str(user.platform_role),
            auth_time=session.auth_time,
        )
        return SwitchResult(access, raw)
