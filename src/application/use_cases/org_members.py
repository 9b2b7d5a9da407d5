"""Members of an organisation: list, invite, accept, promote or demote, remove."""

import uuid
from dataclasses import dataclass
from datetime import timedelta

from application.administrators import LastAdministrator, set_administrator
from application.authorization import (
    AuthzDeps,
    PermissionResolver,
    group_permissions,
    load_effective,
    roles_by_id,
    same_org,
)
from application.errors import Conflict, Forbidden, InvalidInput, NotFound
from application.identity import RequestContext
from application.org_authority import authorize
from application.ports.mailer import MailMessage
from application.ports.unit_of_work import UnitOfWork
from application.use_cases.accounts import send_mail, validated_email
from application.use_cases.session_tokens import new_secret_token, revoke_in_store
from application.use_cases.sessions import Principal
from domain.invitations import Invitation, invitation_token, split_invitation_token
from domain.orgs import Membership, OrgRole
from domain.permissions import ADMINISTRATOR_ROLE_ID, SYSTEM_ROLE_BY_ID, role_permissions
from domain.roles import Permission
from domain.sessions import token_digest
from domain.users import User

INVITATION_TTL = timedelta(days=7)


@dataclass
class MembersUseCase:
    deps: AuthzDeps

    @property
    def resolver(self) -> PermissionResolver:
        return PermissionResolver(self.deps)


class ListMembers(MembersUseCase):
    async def __call__(self, principal: Principal, org_id: uuid.UUID) -> list[tuple[Membership, User]]:
        same_org(principal, org_id)
        await self.resolver.require(principal, "members:read")
        async with self.deps.identity.uow() as uow:
            return await uow.authz.members(org_id)


@dataclass(frozen=True)
class InvitationGrant:
    """What accepting an invitation hands out: permissions, and every role id they come through
    (directly or by a group), so that the Administrator role is seen wherever it hides."""

    permissions: frozenset[Permission]
    role_ids: frozenset[uuid.UUID]


async def invitation_grant(
    uow: UnitOfWork, org_id: uuid.UUID, role_ids: list[uuid.UUID], group_ids: list[uuid.UUID]
) -> InvitationGrant:
    roles = await roles_by_id(uow, org_id, role_ids)
    permissions = {p for role in roles.values() for p in role_permissions(role)}
    through = set(roles)
    for group_id in group_ids:
        permissions |= await group_permissions(uow, org_id, group_id)
        through |= set(await uow.authz.group_role_ids(org_id, group_id))
    return InvitationGrant(frozenset(permissions), frozenset(through))


def as_one_administrator_rule(
    org_role: OrgRole, role_ids: list[uuid.UUID]
) -> tuple[OrgRole, list[uuid.UUID]]:
    """An invitation as administrator carries the Administrator role, and the other way round."""
    role_ids = list(dict.fromkeys(role_ids))
    if org_role is not OrgRole.ADMINISTRATOR and ADMINISTRATOR_ROLE_ID not in role_ids:
        return org_role, role_ids
    if ADMINISTRATOR_ROLE_ID not in role_ids:
        role_ids.append(ADMINISTRATOR_ROLE_ID)
    return OrgRole.ADMINISTRATOR, role_ids


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
        identity = self.deps.identity
        address = validated_email(email)
        org_role, role_ids = as_one_administrator_rule(org_role, role_ids)
        group_ids = list(dict.fromkeys(group_ids))
        now = identity.clock.now()
        secret = new_secret_token()
        token = invitation_token(org_id, secret)
        async with identity.uow() as uow:
            actor = await authorize(uow, principal, org_id, "members:create")
            org = await uow.orgs.get(org_id)
            if org is None:
                raise NotFound("No such organisation.")
            custom = [r for r in role_ids if r not in SYSTEM_ROLE_BY_ID]
            if not await uow.authz.existing_ids(org_id, custom, group_ids):
                raise NotFound("A role or group given does not exist in this organisation.")
            grant = await invitation_grant(uow, org_id, role_ids, group_ids)
            actor.ensure_may_move_administrator(grant.role_ids)
            actor.ensure_holds(grant.permissions)
            invitation = Invitation(
                id=uuid.uuid4(),
                org_id=org_id,
                email=address,
                org_role=org_role,
                role_ids=tuple(role_ids),
                group_ids=tuple(group_ids),
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
                    # The address stays in the invitation (erased when it is used, withdrawn or
                    # its owner closes their account); the append-only log keeps ids only.
                    after={
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


class InviterLostTheRight(Forbidden):
    """The member who invited you can no longer grant what this invitation carries; ask for a new one."""

    code = "invitation_exceeds_inviter"


async def ensure_inviter_still_may(uow: UnitOfWork, invitation: Invitation) -> None:
    """An invitation is its inviter's grant carried out later: it must still be one they could
    make now (a demoted or removed inviter's pending invitations stop granting)."""
    org_id = invitation.org_id
    inviter = await uow.authz.membership(org_id, invitation.invited_by)
    if inviter is None:
        raise InviterLostTheRight()
    held = (await load_effective(uow, org_id, invitation.invited_by)).permissions
    live_roles = {r.id for r in await uow.authz.custom_roles(org_id)}
    live_groups = {g.id for g in await uow.authz.groups(org_id)}
    grant = await invitation_grant(
        uow,
        org_id,
        [r for r in invitation.role_ids if r in SYSTEM_ROLE_BY_ID or r in live_roles],
        [g for g in invitation.group_ids if g in live_groups],
    )
    administrator = invitation.org_role is OrgRole.ADMINISTRATOR or ADMINISTRATOR_ROLE_ID in grant.role_ids
    if (
        not any(str(p) == "members:create" for p in held)
        or not grant.permissions <= held
        or (administrator and inviter.role is not OrgRole.ADMINISTRATOR)
    ):
        raise InviterLostTheRight()


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
            await uow.orgs.lock(org_id)  # the inviter's rights are judged with the org's changes held
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
            await ensure_inviter_still_may(uow, invitation)
            if not await uow.authz.accept_invitation(org_id, invitation.id, user.id, now):
                raise invalid
            org_role, role_ids = as_one_administrator_rule(invitation.org_role, list(invitation.role_ids))
            membership = Membership(org_id, user.id, org_role, now)
            await uow.orgs.add_membership(membership)
            custom = {r.id for r in await uow.authz.custom_roles(org_id)}
            groups = {g.id for g in await uow.authz.groups(org_id)}
            for role_id in role_ids:
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
                    after={"org_role": str(org_role)},
                    invitation_id=invitation.id,
                )
            )
            await uow.commit()
        await self.resolver.published(org_id, version)
        identity.profiles.forget_user(user.id)
        return membership


class ChangeMemberRole(MembersUseCase):
    """Promotes or demotes a member (see `application.administrators`)."""

    async def __call__(
        self, principal: Principal, org_id: uuid.UUID, user_id: uuid.UUID, role: OrgRole, ctx: RequestContext
    ) -> tuple[Membership, User]:
        async with self.deps.identity.uow() as uow:
            actor = await authorize(uow, principal, org_id, "members:update")
            membership, version = await set_administrator(
                uow, actor, user_id, role is OrgRole.ADMINISTRATOR, self.deps.identity.clock.now(), ctx
            )
            user = await uow.users.get(user_id)
            if user is None:
                raise NotFound("No such member.")
            await uow.commit()
        if version is not None:
            await self.resolver.published(org_id, version)
            self.deps.identity.profiles.forget_user(user_id)
        return membership, user


class RemoveMember(MembersUseCase):
    """Leaving needs only membership; removing someone else needs `members:delete` and the
    administrator role. Their sessions in this org end at once."""

    async def __call__(
        self, principal: Principal, org_id: uuid.UUID, user_id: uuid.UUID, ctx: RequestContext
    ) -> None:
        identity = self.deps.identity
        now = identity.clock.now()
        async with identity.uow() as uow:
            actor = await authorize(uow, principal, org_id)
            if user_id != principal.user_id:
                actor.require("members:delete")
                actor.require_administrator()
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
