"""The signed-in user's linked sign-in identities: list, link another (link mode of the SSO
flow, step-up first), unlink (step-up; never the last way in)."""

import uuid
from dataclasses import dataclass

from application.errors import Conflict, NotFound
from application.identity import RequestContext
from application.sso_ports import SsoPorts, SsoStart, begin_flow, checked_return_to, configured_client
from application.step_up import require_recent_auth
from application.use_cases.sessions import Principal
from domain.sso import SsoIdentity, SsoPurpose, has_password

LINK_RETURN_TO = "/settings/identities"


@dataclass
class ListIdentities:
    ports: SsoPorts

    async def __call__(self, principal: Principal) -> list[SsoIdentity]:
        async with self.ports.identity.uow() as uow:
            return await uow.sso.identities_of(principal.user_id)


@dataclass
class StartIdentityLink:
    """Link mode: whatever email the provider reports, the identity goes to the signed-in
    account (the user proved both ends: a recent sign-in here, and the provider's login)."""

    ports: SsoPorts

    async def __call__(
        self, principal: Principal, provider_name: str, return_to: str | None, ctx: RequestContext
    ) -> SsoStart:
        provider, client = configured_client(self.ports, provider_name)
        deps = self.ports.identity
        require_recent_auth(principal.auth_time, deps.clock.now(), deps.policy.stepup_window)
        path = checked_return_to(return_to or LINK_RETURN_TO)
        started = await begin_flow(
            self.ports,
            provider,
            client,
            SsoPurpose.LINK,
            path,
            user_id=principal.user_id,
            session_id=principal.session_id,
        )
        async with deps.uow() as uow:
            await uow.audit.append(
                ctx.event(
                    "sso.link_started",
                    actor=principal.user_id,
                    org=principal.org_id,
                    target_type="user",
                    target_id=principal.user_id,
                    provider=str(provider),
                )
            )
            await uow.commit()
        return started


@dataclass
class UnlinkIdentity:
    ports: SsoPorts

    async def __call__(self, principal: Principal, identity_id: uuid.UUID, ctx: RequestContext) -> None:
        deps = self.ports.identity
        require_recent_auth(principal.auth_time, deps.clock.now(), deps.policy.stepup_window)
        async with deps.uow() as uow:
            user = await uow.users.get(principal.user_id)
            mine = await uow.sso.identities_of(principal.user_id, lock=True)
            target = next((i for i in mine if i.id == identity_id), None)
            if user is None or target is None:
                raise NotFound("No such identity.")  # another user's id reads as a missing one
            if not has_password(user.password_hash) and len(mine) == 1:
                raise Conflict(
                    "This is your only way to sign in: set a password (through password reset) or link "
                    "another provider first.",
                    code="last_sign_in_method",
                )
            await uow.sso.remove_identity(principal.user_id, identity_id)
            await uow.audit.append(
                ctx.event(
                    "sso.identity_unlinked",
                    actor=principal.user_id,
                    org=principal.org_id,
                    target_type="sso_identity",
                    target_id=identity_id,
                    provider=str(target.provider),
                )
            )
            await uow.commit()
