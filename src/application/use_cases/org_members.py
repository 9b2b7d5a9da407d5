"""Members of an organisation: list, invite, accept, change org role, remove."""

import uuid
from dataclasses import dataclass
from datetime import timedelta

from application.authorization import (
    AuthzDeps,
    PermissionResolver,
    ensure_may_grant,
    group_permissions,
    roles_by_id,
    same_org,
)
from application.errors import Conflict, Forbidden, InvalidInput, NotFound
from application.identity import RequestContext
from application.ports.mailer import MailMessage
from application.use_cases.accounts import send_mail, validated_email
from application.use_cases.session_tokens import new_secret_token, revoke_in_store
from application.use_cases.sessions import Principal
from domain.invitations import Invitation, invitation_token, split_invitation_token
from domain.orgs import Membership, OrgRole
from domain.permissions import SYSTEM_ROLE_BY_ID, SYSTEM_ROLE_IDS, SystemRole, role_permissions, system_role
from domain.sessions import token_digest
from domain.users import User

INVITATION_TTL = timedelta(days=7)


class LastAdministrator(Conflict):
    """An organisation must keep at least one administrator."""

    code = "last_administrator"


@dataclass
class MembersUseCase:
    deps: AuthzDeps

    @property
    def resolver(self) -> PermissionResolver:
        return PermissionResolver(self.deps)


class ListMembers(MembersUseCase):
    async def __call__(self, principal: Principal, org_id: uuid.UUID) -> list[tuple[Membership, User]]:
        same_org(principal, org_id)
        async with self.deps.identity.uow() as uow:
            return await uow.authz.members(org_id)


class InviteMember(MembersUseCase):
    async def __call__(
        self,
        principal: Principal,
        org_id: uuid.UUID,
        email: str,
        org_role: OrgRole,
        role_ids: list[uuid.UUID],
        group_ids: list[uuid.UUID],
        ctx: RequestContext,
    ) -> Invitation:
        same_org(principal, org_id)
        identity = self.deps.identity
        address = validated_email(email)
        now = identity.clock.now()
        secret = new_secret_token()
        token = invitation_token(org_id, secret)
        async with identity.uow() as uow:
            org = await uow.orgs.get(org_id)
            if org is None:
                raise NotFound("No such organisation.")
            custom = [r for r in role_ids if r not in SYSTEM_ROLE_BY_ID]
            if not await uow.authz.existing_ids(org_id, custom, group_ids):
                raise NotFound("A role or group given does not exist in this organisation.")
            if org_role is OrgRole.ADMINISTRATOR:
                inviter = await uow.authz.membership(org_id, principal.user_id)
                if inviter is None or inviter.role is not OrgRole.ADMINISTRATOR:
                    raise Forbidden(
                        "Only an administrator may invite administrators.", code="org_admin_required"
                    )
            roles = await roles_by_id(uow, org_id, list(role_ids))
            granted = {p for role in roles.values() for p in role_permissions(role)}
            for group_id in group_ids:
                granted |= await group_permissions(uow, org_id, group_id)
            await ensure_may_grant(uow, principal, granted)
            invitation = Invitation(
                id=uuid.uuid4(),
                org_id=org_id,
                email=address,
                org_role=org_role,
                role_ids=tuple(dict.fromkeys(role_ids)),
                group_ids=tuple(dict.fromkeys(group_ids)),
                token_hash=token_digest(token),
                invited_by=principal.user_id,
                created_at=now,
                expires_at=now + INVITATION_TTL,
            )
            await uow.authz.add_invitation(invitation)
            await uow.audit.append(
                ctx.event(
                    "member.invited",
                    actor=principal.user_id,
                    org=org_id,
                    target_type="invitation",
                    target_id=invitation.id,
                    after={
                        "email": address,
                        "org_role": str(org_role),
                        "role_ids": [str(r) for r in invitation.role_ids],
                        "group_ids": [str(g) for g in invitation.group_ids],
                    },
                )
            )
            await uow.commit()
        link = f"{identity.policy.frontend_url.rstrip('/')}/accept-invitation?token={token}"
        await send_mail(
            identity,
            MailMessage(
                to=address,
                subject=f"You are invited to {org.name} on Bulwark",
                body=f"You have been invited to join {org.name} on Bulwark.\n\nTo accept, log in with this "
                f"address and open:\n{link}\n\nThe invitation works once and expires in 7 days.\n",
            ),
        )
        return invitation


class AcceptInvitation(MembersUseCase):
    """The invited address must be the logged-in user's own."""

    async def __call__(self, principal: Principal, token: str, ctx: RequestContext) -> Membership:
        identity = self.deps.identity
        invalid = InvalidInput(
            "This invitation is invalid or has expired.", code="invalid_or_expired_token", field="token"
        )
        parts = split_invitation_token(token)
        if parts is None:
            raise invalid
        org_id, _ = parts
        now = identity.clock.now()
        async with identity.uow() as uow:
            invitation = await uow.authz.invitation(org_id, token_digest(token))
            user = await uow.users.get(principal.user_id)
            org = await uow.orgs.get(org_id)
            if invitation is None or user is None or org is None or not invitation.usable(now):
                raise invalid
            if user.email != invitation.email:
                raise Forbidden(
                    "This invitation is for another email address.", code="invitation_email_mismatch"
                )
            if org.is_disabled:
                raise Forbidden("That organisation is disabled.", code="org_disabled")
            if await uow.authz.membership(org_id, user.id) is not None:
                raise Conflict("You are already a member of this organisation.", code="already_member")
            if not await uow.authz.accept_invitation(org_id, invitation.id, user.id, now):
                raise invalid
            membership = Membership(org_id, user.id, invitation.org_role, now)
            await uow.orgs.add_membership(membership)
            custom = {r.id for r in await uow.authz.custom_roles(org_id)}
            groups = {g.id for g in await uow.authz.groups(org_id)}
            for role_id in invitation.role_ids:
                if role_id in SYSTEM_ROLE_BY_ID or role_id in custom:  # deleted since: skipped
                    await uow.authz.assign_member_role(org_id, user.id, role_id, now)
            for group_id in invitation.group_ids:
                if group_id in groups:
                    await uow.authz.add_group_member(org_id, group_id, user.id, now)
            version = await uow.authz.bump_version(org_id)
            await uow.audit.append(
                ctx.event(
                    "member.joined",
                    actor=user.id,
                    org=org_id,
                    target_type="user",
                    target_id=user.id,
                    after={"org_role": str(invitation.org_role)},
                    invitation_id=invitation.id,
                )
            )
            await uow.commit()
        await self.resolver.published(org_id, version)
        identity.profiles.forget_user(user.id)
        return membership


class ChangeMemberRole(MembersUseCase):
    async def __call__(
        self, principal: Principal, org_id: uuid.UUID, user_id: uuid.UUID, role: OrgRole, ctx: RequestContext
    ) -> Membership:
        same_org(principal, org_id)
        async with self.deps.identity.uow() as uow:
            await uow.orgs.lock(org_id)  # two admins demoting each other must not leave none
            membership = await uow.authz.membership(org_id, user_id)
            if membership is None:
                raise NotFound("No such member.")
            before = membership.role
            if (
                before is OrgRole.ADMINISTRATOR
                and role is not OrgRole.ADMINISTRATOR
                and await uow.authz.administrators(org_id) <= 1
            ):
                raise LastAdministrator()
            await uow.authz.set_org_role(org_id, user_id, role)
            # The org role and the Administrator system role move together: a demoted
            # administrator must not keep every permission through the role.
            admin_role = SYSTEM_ROLE_IDS[SystemRole.ADMINISTRATOR]
            if role is OrgRole.ADMINISTRATOR and before is not OrgRole.ADMINISTRATOR:
                await ensure_may_grant(
                    uow, principal, role_permissions(system_role(SystemRole.ADMINISTRATOR))
                )
                await uow.authz.assign_member_role(
                    org_id, user_id, admin_role, self.deps.identity.clock.now()
                )
            elif role is not OrgRole.ADMINISTRATOR and before is OrgRole.ADMINISTRATOR:
                await uow.authz.unassign_member_role(org_id, user_id, admin_role)
            version = await uow.authz.bump_version(org_id)
            await uow.audit.append(
                ctx.event(
                    "member.org_role_changed",
                    actor=principal.user_id,
                    org=org_id,
                    target_type="user",
                    target_id=user_id,
                    before={"org_role": str(before)},
                    after={"org_role": str(role)},
                )
            )
            await uow.commit()
        await self.resolver.published(org_id, version)
        self.deps.identity.profiles.forget_user(user_id)
        membership.role = role
        return membership


class RemoveMember(MembersUseCase):
    """Their sessions in this org end at once."""

    async def __call__(
        self, principal: Principal, org_id: uuid.UUID, user_id: uuid.UUID, ctx: RequestContext
    ) -> None:
        same_org(principal, org_id)
        identity = self.deps.identity
        now = identity.clock.now()
        async with identity.uow() as uow:
            await uow.orgs.lock(org_id)
            membership = await uow.authz.membership(org_id, user_id)
            if membership is None:
                raise NotFound("No such member.")
            if membership.role is OrgRole.ADMINISTRATOR and await uow.authz.administrators(org_id) <= 1:
                raise LastAdministrator()
            role_ids = await uow.authz.member_role_ids(org_id, user_id)
            await uow.authz.remove_member(org_id, user_id)
            revoked = await uow.sessions.revoke_all_for_org(org_id, now, "removed_from_org", user_id=user_id)
            version = await uow.authz.bump_version(org_id)
            await uow.audit.append(
                ctx.event(
                    "member.removed",
                    actor=principal.user_id,
                    org=org_id,
                    target_type="user",
                    target_id=user_id,
                    before={"org_role": str(membership.role), "role_ids": [str(r) for r in role_ids]},
                    after=None,
                    sessions_revoked=len(revoked),
                )
            )
            await uow.commit()
        await self.resolver.published(org_id, version)
        identity.profiles.forget_user(user_id)
        await revoke_in_store(identity, revoked, now + identity.policy.session_absolute)
