"""Integration secrets on the public API: write-only. Values go in sealed and never come out
here; only the credential vault can open them."""

from typing import Any
from uuid import UUID

from litestar import Controller, Request, delete, get, post
from litestar.di import Provide
from litestar.params import FromPath, JSONBody

from entrypoints.controllers.broker_views import secret_view
from entrypoints.dto.brokers import (
    CreateIntegrationSecretRequest,
    IntegrationSecretList,
    IntegrationSecretView,
)
from entrypoints.http.auth import provide_principal
from entrypoints.http.dependencies import ContainerDep, PrincipalDep
from entrypoints.http.guards import require_permission
from entrypoints.http.request_context import request_context

OrgId = FromPath[UUID]
Req = Request[Any, Any, Any]


class IntegrationSecretController(Controller):
    path = "/api/v1/orgs/{org_id:uuid}/integration-secrets"
    tags = ["integration-secrets"]
    dependencies = {"principal": Provide(provide_principal)}

    @post(
        "",
        status_code=201,
        operation_id="createIntegrationSecret",
        guards=[require_permission("broker_connections:create")],
    )
    async def create(
        self,
        org_id: OrgId,
        data: JSONBody[CreateIntegrationSecretRequest],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> IntegrationSecretView:
        secret = await container.brokers.create_secret(
            principal, org_id, data.name, data.kind, data.value, request_context(request)
        )
        return secret_view(secret)

    @get("", operation_id="listIntegrationSecrets", guards=[require_permission("broker_connections:read")])
    async def list_secrets(
        self, org_id: OrgId, principal: PrincipalDep, container: ContainerDep
    ) -> IntegrationSecretList:
        return IntegrationSecretList(
            secrets=[secret_view(s) for s in await container.brokers.list_secrets(principal, org_id)]
        )

    @delete(
        "/{secret_id:uuid}",
        operation_id="deleteIntegrationSecret",
        guards=[require_permission("broker_connections:delete")],
    )
    async def remove(
        self,
        org_id: OrgId,
        secret_id: FromPath[UUID],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> None:
        await container.brokers.delete_secret(principal, org_id, secret_id, request_context(request))
