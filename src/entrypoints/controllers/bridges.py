"""MT5 bridges on the public API: create (the key shown once), list, read, rename, revoke, and
rotate the key. The guards are a first filter; the use cases authorize themselves."""

from typing import Any
from uuid import UUID

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import Provide
from litestar.params import FromPath, JSONBody

from domain.bridges import Bridge
from entrypoints.composition import Container
from entrypoints.controllers.bridge_views import bridge_view
from entrypoints.dto.bridges import (
    BridgeList,
    BridgeView,
    BridgeWithKey,
    CommandView,
    CreateBridgeRequest,
    QueueCommandRequest,
    RenameBridgeRequest,
)
from entrypoints.http.auth import provide_principal
from entrypoints.http.dependencies import ContainerDep, PrincipalDep
from entrypoints.http.guards import require_permission
from entrypoints.http.request_context import request_context

OrgId = FromPath[UUID]
BridgeId = FromPath[UUID]
Req = Request[Any, Any, Any]


def _view(container: Container, bridge: Bridge) -> BridgeView:
    return bridge_view(bridge, container.clock.now(), container.bridges.policy.offline_after)


class BridgeController(Controller):
    path = "/api/v1/orgs/{org_id:uuid}/bridges"
    tags = ["bridges"]
    dependencies = {"principal": Provide(provide_principal)}

    @post("", status_code=201, operation_id="createBridge", guards=[require_permission("bridges:create")])
    async def create(
        self,
        org_id: OrgId,
        data: JSONBody[CreateBridgeRequest],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> BridgeWithKey:
        issued = await container.bridges.create(
            principal, org_id, data.name, data.broker_connection, request_context(request)
        )
        return BridgeWithKey(bridge=_view(container, issued.bridge), key=issued.key)

    @get("", operation_id="listBridges", guards=[require_permission("bridges:read")])
    async def list_bridges(
        self, org_id: OrgId, principal: PrincipalDep, container: ContainerDep
    ) -> BridgeList:
        found = await container.bridges.list_bridges(principal, org_id)
        return BridgeList(bridges=[_view(container, b) for b in found])

    @get("/{bridge_id:uuid}", operation_id="getBridge", guards=[require_permission("bridges:read")])
    async def get_bridge(
        self, org_id: OrgId, bridge_id: BridgeId, principal: PrincipalDep, container: ContainerDep
    ) -> BridgeView:
        return _view(container, await container.bridges.get(principal, org_id, bridge_id))

    @patch("/{bridge_id:uuid}", operation_id="renameBridge", guards=[require_permission("bridges:update")])
    async def rename(
        self,
        org_id: OrgId,
        bridge_id: BridgeId,
        data: JSONBody[RenameBridgeRequest],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> BridgeView:
        renamed = await container.bridges.rename(
            principal, org_id, bridge_id, data.name, request_context(request)
        )
        return _view(container, renamed)

    @delete("/{bridge_id:uuid}", operation_id="deleteBridge", guards=[require_permission("bridges:delete")])
    async def revoke(
        self,
        org_id: OrgId,
        bridge_id: BridgeId,
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> None:
        await container.bridges.revoke(principal, org_id, bridge_id, request_context(request))

    @post(
        "/{bridge_id:uuid}/commands",
        status_code=201,
        operation_id="queueBridgeCommand",
        guards=[require_permission("bridges:execute")],
    )
    async def queue_command(
        self,
        org_id: OrgId,
        bridge_id: BridgeId,
        data: JSONBody[QueueCommandRequest],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> CommandView:
        command = await container.bridges.queue_command(
            principal, org_id, bridge_id, data.kind, dict(data.payload), request_context(request)
        )
        return CommandView(command.id, command.seq, command.kind, dict(command.payload), command.expires_at)

    @post(
        "/{bridge_id:uuid}/rotate-key",
        status_code=200,
        operation_id="rotateBridgeKey",
        guards=[require_permission("bridges:update")],
    )
    async def rotate_key(
        self,
        org_id: OrgId,
        bridge_id: BridgeId,
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> BridgeWithKey:
        issued = await container.bridges.rotate_key(principal, org_id, bridge_id, request_context(request))
        return BridgeWithKey(bridge=_view(container, issued.bridge), key=issued.key)
