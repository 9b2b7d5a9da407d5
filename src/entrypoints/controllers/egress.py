"""Dedicated egress addresses: the admin panel's routes (under its prefix, admin session only)
and the signed-in user's own address."""

from typing import Annotated, TypeAlias
from uuid import UUID

from litestar import Controller, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from application.errors import NotFound
from entrypoints.composition import EgressApi
from entrypoints.controllers.egress_views import admin_egress, egress_audit, my_egress
from entrypoints.dto.egress import (
    AdminEgressAddress,
    AdminEgressAddressList,
    EgressAuditResponse,
    MyEgressAddress,
    ReleaseEgressRequest,
)
from entrypoints.http.admin_auth import provide_admin, require_admin
from entrypoints.http.admin_panel_dependencies import AdminDep, ContextDep, provide_context
from entrypoints.http.auth import provide_principal
from entrypoints.http.dependencies import ContainerDep, PrincipalDep

EgressDep: TypeAlias = NamedDependency[EgressApi]


def provide_egress(container: ContainerDep) -> EgressApi:
    return container.egress


class AdminEgressController(Controller):
    path = "/"
    tags = ["admin"]
    guards = [require_admin]
    dependencies = {
        "admin": Provide(provide_admin),
        "egress": Provide(provide_egress, sync_to_thread=False),
        "ctx": Provide(provide_context, sync_to_thread=False),
    }

    @get(
        "/egress/addresses", operation_id="adminListEgressAddresses", summary="The ledger, by state and user."
    )
    async def list_addresses(
        self,
        admin: AdminDep,
        egress: EgressDep,
        # `state` is a name Litestar keeps for the app's state: the query parameter is renamed.
        state_filter: Annotated[str | None, QueryParameter(name="state")] = None,
        user: FromQuery[UUID | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int] = 50,
    ) -> AdminEgressAddressList:
        page = await egress.list_addresses(admin, state_filter, user, cursor, limit)
        return AdminEgressAddressList(
            items=[admin_egress(a) for a in page.addresses], next_cursor=page.next_cursor
        )

    @post(
        "/egress/addresses/{address:str}/release",
        status_code=200,
        operation_id="adminReleaseEgressAddress",
        summary="Starts the address's teardown: its holder loses it at once.",
    )
    async def release(
        self,
        address: FromPath[str],
        admin: AdminDep,
        egress: EgressDep,
        ctx: ContextDep,
        data: JSONBody[ReleaseEgressRequest | None] = None,
    ) -> AdminEgressAddress:
        reason = None if data is None else data.reason
        return admin_egress(await egress.release(admin, address, reason, ctx))

    @get("/egress/audit", operation_id="adminEgressAudit", summary="Ledger, provider and gateway compared.")
    async def audit(self, admin: AdminDep, egress: EgressDep) -> EgressAuditResponse:
        return egress_audit(await egress.audit(admin))

    @post(
        "/users/{user_id:uuid}/egress/allocate",
        status_code=200,
        operation_id="adminForceEgressAllocation",
        summary="Allocates a paying user's dedicated address now.",
    )
    async def allocate(
        self, user_id: FromPath[UUID], admin: AdminDep, egress: EgressDep, ctx: ContextDep
    ) -> AdminEgressAddress:
        return admin_egress(await egress.force_allocation(admin, user_id, ctx))


class MyEgressController(Controller):
    path = "/api/v1/me/egress"
    tags = ["me"]
    dependencies = {
        "principal": Provide(provide_principal),
        "egress": Provide(provide_egress, sync_to_thread=False),
    }

    @get("", operation_id="getMyEgress", summary="The caller's dedicated egress address, or 404.")
    async def mine(self, principal: PrincipalDep, egress: EgressDep) -> MyEgressAddress:
        address = await egress.mine(principal.user_id)
        if address is None:
            raise NotFound("You have no dedicated egress address.", code="no_egress_address")
        return my_egress(address)
