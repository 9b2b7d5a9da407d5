"""Broker connections on the public API: start cTrader's consent, take the browser back, list,
rename and revoke. The guards are a first filter; the use cases authorize themselves."""

import logging
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import Provide
from litestar.params import FromPath, JSONBody
from litestar.response import Redirect

from application.use_cases.broker_connections import CallbackFailed
from domain.brokers import OAUTH_STATE_TTL
from entrypoints.controllers.broker_views import connection_view
from entrypoints.dto.brokers import (
    AuthorizationUrl,
    AuthorizeRequest,
    BrokerConnectionList,
    BrokerConnectionView,
    ConnectionRevoked,
    RenameConnectionRequest,
)
from entrypoints.http.auth import provide_principal
from entrypoints.http.cookies import (
    broker_flow_cookie_header,
    broker_flow_cookie_name,
    cleared_broker_flow_cookie_header,
    refresh_cookie_in,
)
from entrypoints.http.dependencies import ContainerDep, PrincipalDep
from entrypoints.http.guards import require_permission
from entrypoints.http.request_context import request_context

log = logging.getLogger("bulwark.brokers")

OrgId = FromPath[UUID]
ConnectionId = FromPath[UUID]
Req = Request[Any, Any, Any]
_NO_STORE = {"cache-control": "no-store", "referrer-policy": "no-referrer"}


class BrokerConnectionController(Controller):
    path = "/api/v1/orgs/{org_id:uuid}/broker-connections"
    tags = ["broker-connections"]
    dependencies = {"principal": Provide(provide_principal)}

    @post(
        "/ctrader/authorize",
        status_code=200,
        operation_id="authorizeCtrader",
        guards=[require_permission("broker_connections:create")],
    )
    async def authorize(
        self,
        org_id: OrgId,
        data: JSONBody[AuthorizeRequest],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> Response[AuthorizationUrl]:
        started = await container.brokers.start_authorization(
            principal, org_id, data.scope, data.connection_id, request_context(request)
        )
        name = broker_flow_cookie_name(container.settings.is_production)
        ttl = int(OAUTH_STATE_TTL.total_seconds())
        return Response(
            AuthorizationUrl(authorization_url=started.authorization_url),
            headers={
                "set-cookie": broker_flow_cookie_header(name, started.browser_binding, ttl),
                **_NO_STORE,
            },
        )

    @get("", operation_id="listBrokerConnections", guards=[require_permission("broker_connections:read")])
    async def list_connections(
        self, org_id: OrgId, principal: PrincipalDep, container: ContainerDep
    ) -> BrokerConnectionList:
        found = await container.brokers.list_connections(principal, org_id)
        return BrokerConnectionList(connections=[connection_view(c) for c in found])

    @get(
        "/{connection_id:uuid}",
        operation_id="getBrokerConnection",
        guards=[require_permission("broker_connections:read")],
    )
    async def get_connection(
        self, org_id: OrgId, connection_id: ConnectionId, principal: PrincipalDep, container: ContainerDep
    ) -> BrokerConnectionView:
        return connection_view(await container.brokers.get_connection(principal, org_id, connection_id))

    @patch(
        "/{connection_id:uuid}",
        operation_id="renameBrokerConnection",
        guards=[require_permission("broker_connections:update")],
    )
    async def rename(
        self,
        org_id: OrgId,
        connection_id: ConnectionId,
        data: JSONBody[RenameConnectionRequest],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> BrokerConnectionView:
        renamed = await container.brokers.rename_connection(
            principal, org_id, connection_id, data.label, request_context(request)
        )
        return connection_view(renamed)

    @delete(
        "/{connection_id:uuid}",
        status_code=200,
        operation_id="deleteBrokerConnection",
        guards=[require_permission("broker_connections:delete")],
    )
    async def revoke(
        self,
        org_id: OrgId,
        connection_id: ConnectionId,
        principal: PrincipalDep,
        container: ContainerDep,
        request: Req,
    ) -> ConnectionRevoked:
        url = await container.brokers.delete_connection(
            principal, org_id, connection_id, request_context(request)
        )
        return ConnectionRevoked(
            id=connection_id,
            status="revoked",
            revoke_at_broker_url=url,
            detail="The tokens are destroyed. Revoke Bulwark's access in cTrader as well.",
        )


class BrokerCallbackController(Controller):
    """The redirect URI registered with cTrader: a top-level browser navigation, so no bearer
    token; the single-use `state` stands for the user. Always a 303 to the SPA."""

    path = "/api/v1/broker-connections/ctrader"
    tags = ["broker-connections"]

    @get("/callback", operation_id="ctraderCallback", status_code=303)
    async def callback(self, container: ContainerDep, request: Req) -> Redirect:
        query = request.query_params
        base = f"{container.settings.frontend_url.rstrip('/')}/broker-connections"
        name = broker_flow_cookie_name(container.settings.is_production)
        headers = {**_NO_STORE, "set-cookie": cleared_broker_flow_cookie_header(name)}
        try:
            connection = await container.brokers.complete_authorization(
                query.get("code"),
                query.get("state"),
                query.get("error"),
                refresh_cookie_in(request.scope["headers"], name),
                request_context(request),
            )
        except CallbackFailed as failed:
            log.info("broker callback refused: %s", failed.code)
            return Redirect(f"{base}?{urlencode({'error': failed.code})}", status_code=303, headers=headers)
        return Redirect(
            f"{base}?{urlencode({'connected': str(connection.id)})}", status_code=303, headers=headers
        )
