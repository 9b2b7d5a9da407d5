"""Organisations and what happens inside one: members, invitations, roles, groups, audit.
Every route under /orgs/{org_id} is guarded: the path org must be the token's org (else 404),
and the caller needs the permission named on the route."""

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, delete, get, patch, post, put
from litestar.di import Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from application.ports.audit_query import AuditFilter
from domain.orgs import OrgRole
from entrypoints.controllers.identity_views import org_view
from entrypoints.controllers.org_views import group_view, member_view, org_detail, role_view
from entrypoints.dto.orgs import (
    AuditEntry,
    AuditList,
    CreateGroupRequest,
    CreateOrgRequest,
    CreateRoleRequest,
    GroupList,
    GroupView,
    InvitationView,
    InviteRequest,
    MemberList,
    MemberView,
    MyOrg,
    OrgDetail,
    OrgList,
    RoleList,
    RoleView,
    UpdateGroupRequest,
    UpdateMemberRequest,
    UpdateOrgRequest,
    UpdateRoleRequest,
)
from entrypoints.http.auth import provide_principal
from entrypoints.http.dependencies import ContainerDep, PrincipalDep
from entrypoints.http.guards import require_org_admin, require_org_member, require_permission, require_write
from entrypoints.http.request_context import request_context

OrgId = FromPath[UUID]
Req = Request[Any, Any, Any]


class OrgController(Controller):
    path = "/api/v1/orgs"
    tags = ["orgs"]
    dependencies = {"principal": Provide(provide_principal)}

    # --- organisations ---------------------------------------------------------------------
    @post("", status_code=201, operation_id="createOrg")
    async def create(
        self, data: JSONBody[CreateOrgRequest], principal: PrincipalDep, container: ContainerDep, request: Req
    ) -> OrgDetail:
        return org_detail(await container.authz.create_org(principal, data.name, request_context(request)))

    @get("", operation_id="listMyOrgs")
    async def mine(self, principal: PrincipalDep, container: ContainerDep) -> OrgList:
        found = await container.authz.list_my_orgs(principal)
        return OrgList(orgs=[MyOrg(org=org_view(org), role=str(m.role)) for m, org in found])

    @get("/{org_id:uuid}", operation_id="getOrg", guards=[require_org_member])
    async def get_org(self, org_id: OrgId, principal: PrincipalDep, container: ContainerDep) -> OrgDetail:
        return org_detail(await container.authz.get_org(principal, org_id))

    @patch("/{org_id:uuid}", operation_id="updateOrg", guards=[require_permission("org_settings:update")])
    async def update_org(
        self,
        org_id: OrgId,
        data: JSONBody[UpdateOrgRequest],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> OrgDetail:
        org = await container.authz.update_org(
            principal,
            org_id,
            data.name,
            data.require_2fa,
            request_context(request),
            trust_sso_mfa=data.trust_sso_mfa,
        )
        return org_detail(org)

    # --- members ---------------------------------------------------------------------------
    @get("/{org_id:uuid}/members", operation_id="listMembers", guards=[require_permission("members:read")])
    async def members(self, org_id: OrgId, principal: PrincipalDep, container: ContainerDep) -> MemberList:
        found = await container.authz.list_members(principal, org_id)
        return MemberList(members=[member_view(m, u) for m, u in found])

    @post(
        "/{org_id:uuid}/invitations",
        status_code=201,
        operation_id="inviteMember",
        guards=[require_permission("members:create")],
    )
    async def invite(
        self,
        org_id: OrgId,
        data: JSONBody[InviteRequest],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> InvitationView:
        invitation = await container.authz.invite_member(
            principal,
            org_id,
            data.email,
            OrgRole(data.org_role),
            data.role_ids,
            data.group_ids,
            request_context(request),
        )
        return InvitationView(
            id=invitation.id,
            email=invitation.email,
            org_role=str(invitation.org_role),
            role_ids=list(invitation.role_ids),
            group_ids=list(invitation.group_ids),
            expires_at=invitation.expires_at,
        )

    @patch(
        "/{org_id:uuid}/members/{user_id:uuid}",
        operation_id="updateMember",
        guards=[require_org_admin, require_permission("members:update")],
    )
    async def update_member(
        self,
        org_id: OrgId,
        user_id: FromPath[UUID],
        data: JSONBody[UpdateMemberRequest],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> MemberView:
        membership, user = await container.authz.change_member_role(
            principal, org_id, user_id, OrgRole(data.org_role), request_context(request)
        )
        return member_view(membership, user)

    @delete(
        "/{org_id:uuid}/members/{user_id:uuid}",
        status_code=204,
        operation_id="removeMember",
        guards=[require_org_member],
    )
    async def remove_member(
        self,
        org_id: OrgId,
        user_id: FromPath[UUID],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> None:
        await container.authz.remove_member(principal, org_id, user_id, request_context(request))

    # --- roles -----------------------------------------------------------------------------
    @get("/{org_id:uuid}/roles", operation_id="listRoles", guards=[require_permission("roles:read")])
    async def roles(self, org_id: OrgId, principal: PrincipalDep, container: ContainerDep) -> RoleList:
        return RoleList(roles=[role_view(r) for r in await container.authz.list_roles(principal, org_id)])

    @post(
        "/{org_id:uuid}/roles",
        status_code=201,
        operation_id="createRole",
        guards=[require_write, require_permission("roles:create")],
    )
    async def create_role(
        self,
        org_id: OrgId,
        data: JSONBody[CreateRoleRequest],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> RoleView:
        role = await container.authz.create_role(
            principal, org_id, data.name, data.description, data.permissions, request_context(request)
        )
        return role_view(role)

    @patch(
        "/{org_id:uuid}/roles/{role_id:uuid}",
        operation_id="updateRole",
        guards=[require_write, require_permission("roles:update")],
    )
    async def update_role(
        self,
        org_id: OrgId,
        role_id: FromPath[UUID],
        data: JSONBody[UpdateRoleRequest],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> RoleView:
        role = await container.authz.update_role(
            principal,
            org_id,
            role_id,
            data.name,
            data.description,
            data.permissions,
            request_context(request),
        )
        return role_view(role)

    @delete(
        "/{org_id:uuid}/roles/{role_id:uuid}",
        status_code=204,
        operation_id="deleteRole",
        guards=[require_write, require_permission("roles:delete")],
    )
    async def delete_role(
        self,
        org_id: OrgId,
        role_id: FromPath[UUID],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> None:
        await container.authz.delete_role(principal, org_id, role_id, request_context(request))

    @put(
        "/{org_id:uuid}/members/{user_id:uuid}/roles/{role_id:uuid}",
        status_code=204,
        operation_id="assignMemberRole",
        guards=[require_write, require_permission("roles:update")],
    )
    async def assign_role(
        self,
        org_id: OrgId,
        user_id: FromPath[UUID],
        role_id: FromPath[UUID],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> None:
        await container.authz.set_member_role(
            principal, org_id, user_id, role_id, True, request_context(request)
        )

    @delete(
        "/{org_id:uuid}/members/{user_id:uuid}/roles/{role_id:uuid}",
        status_code=204,
        operation_id="unassignMemberRole",
        guards=[require_write, require_permission("roles:update")],
    )
    async def unassign_role(
        self,
        org_id: OrgId,
        user_id: FromPath[UUID],
        role_id: FromPath[UUID],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> None:
        await container.authz.set_member_role(
            principal, org_id, user_id, role_id, False, request_context(request)
        )

    # --- groups ----------------------------------------------------------------------------
    @get("/{org_id:uuid}/groups", operation_id="listGroups", guards=[require_permission("groups:read")])
    async def groups(self, org_id: OrgId, principal: PrincipalDep, container: ContainerDep) -> GroupList:
        found = await container.authz.list_groups(principal, org_id)
        return GroupList(groups=[group_view(g) for g in found])

    @post(
        "/{org_id:uuid}/groups",
        status_code=201,
        operation_id="createGroup",
        guards=[require_write, require_permission("groups:create")],
    )
    async def create_group(
        self,
        org_id: OrgId,
        data: JSONBody[CreateGroupRequest],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> GroupView:
        g = await container.authz.create_group(
            principal, org_id, data.name, data.description, request_context(request)
        )
        return group_view(g, member_ids=[], role_ids=[])

    @get(
        "/{org_id:uuid}/groups/{group_id:uuid}",
        operation_id="getGroup",
        guards=[require_permission("groups:read")],
    )
    async def get_group(
        self, org_id: OrgId, group_id: FromPath[UUID], principal: PrincipalDep, container: ContainerDep
    ) -> GroupView:
        detail = await container.authz.get_group(principal, org_id, group_id)
        return group_view(detail.group, member_ids=detail.member_ids, role_ids=detail.role_ids)

    @patch(
        "/{org_id:uuid}/groups/{group_id:uuid}",
        operation_id="updateGroup",
        guards=[require_write, require_permission("groups:update")],
    )
    async def update_group(
        self,
        org_id: OrgId,
        group_id: FromPath[UUID],
        data: JSONBody[UpdateGroupRequest],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> GroupView:
        g = await container.authz.update_group(
            principal, org_id, group_id, data.name, data.description, request_context(request)
        )
        return group_view(g)

    @delete(
        "/{org_id:uuid}/groups/{group_id:uuid}",
        status_code=204,
        operation_id="deleteGroup",
        guards=[require_write, require_permission("groups:delete")],
    )
    async def delete_group(
        self,
        org_id: OrgId,
        group_id: FromPath[UUID],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> None:
        await container.authz.delete_group(principal, org_id, group_id, request_context(request))

    @put(
        "/{org_id:uuid}/groups/{group_id:uuid}/members/{user_id:uuid}",
        status_code=204,
        operation_id="addGroupMember",
        guards=[require_write, require_permission("groups:update")],
    )
    async def add_group_member(
        self,
        org_id: OrgId,
        group_id: FromPath[UUID],
        user_id: FromPath[UUID],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> None:
        await container.authz.set_group_member(
            principal, org_id, group_id, user_id, True, request_context(request)
        )

    @delete(
        "/{org_id:uuid}/groups/{group_id:uuid}/members/{user_id:uuid}",
        status_code=204,
        operation_id="removeGroupMember",
        guards=[require_write, require_permission("groups:update")],
    )
    async def remove_group_member(
        self,
        org_id: OrgId,
        group_id: FromPath[UUID],
        user_id: FromPath[UUID],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> None:
        await container.authz.set_group_member(
            principal, org_id, group_id, user_id, False, request_context(request)
        )

    @put(
        "/{org_id:uuid}/groups/{group_id:uuid}/roles/{role_id:uuid}",
        status_code=204,
        operation_id="addGroupRole",
        guards=[require_write, require_permission("groups:update")],
    )
    async def add_group_role(
        self,
        org_id: OrgId,
        group_id: FromPath[UUID],
        role_id: FromPath[UUID],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> None:
        await container.authz.set_group_role(
            principal, org_id, group_id, role_id, True, request_context(request)
        )

    @delete(
        "/{org_id:uuid}/groups/{group_id:uuid}/roles/{role_id:uuid}",
        status_code=204,
        operation_id="removeGroupRole",
        guards=[require_write, require_permission("groups:update")],
    )
    async def remove_group_role(
        self,
        org_id: OrgId,
        group_id: FromPath[UUID],
        role_id: FromPath[UUID],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> None:
        await container.authz.set_group_role(
            principal, org_id, group_id, role_id, False, request_context(request)
        )

    # --- audit -----------------------------------------------------------------------------
    @get("/{org_id:uuid}/audit", operation_id="listOrgAudit", guards=[require_permission("audit_log:read")])
    async def audit(
        self,
        org_id: OrgId,
        principal: PrincipalDep,
        container: ContainerDep,
        actor: FromQuery[UUID | None] = None,
        action: FromQuery[str | None] = None,
        target_type: FromQuery[str | None] = None,
        target_id: FromQuery[str | None] = None,
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> AuditList:
        page = await container.authz.list_audit(
            principal, org_id, AuditFilter(actor, action, target_type, target_id, since, until), cursor, limit
        )
        return AuditList(
            entries=[
                AuditEntry(
                    id=r.id,
                    occurred_at=r.occurred_at,
                    action=r.event.action,
                    actor_kind=str(r.event.actor_kind),
                    actor_user_id=r.event.actor_user_id,
                    target_type=r.event.target_type,
                    target_id=r.event.target_id,
                    source_ip=r.event.source_ip,
                    request_id=r.event.request_id,
                    details=dict(r.event.details),
                )
                for r in page.records
            ],
            next_cursor=page.next_cursor,
        )
