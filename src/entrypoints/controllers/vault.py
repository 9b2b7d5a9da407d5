"""The credential vault's HTTP API, for the platform's internal workers only (a private address).
Service clients exchange their secret for a short-lived token (OAuth 2.0 client credentials),
then ask for a broker access token or an integration secret at the moment they use it."""

import asyncio
import base64
import binascii
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, unquote_plus
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from application.errors import DependencyUnavailable, InvalidInput, NotAuthenticated, RateLimited
from application.ports.service_tokens import InvalidServiceToken, ServiceToken
from application.use_cases.service_clients import InvalidClient, InvalidScope
from entrypoints.composition import VaultContainer
from entrypoints.dto.brokers import AccountView
from entrypoints.dto.egress_access import EgressAccessView, egress_access_view
from entrypoints.dto.identity import WriteBody
from entrypoints.http.request_context import request_context

Req = Request[Any, Any, Any]
VaultDep = NamedDependency[VaultContainer]
ServiceDep = NamedDependency[ServiceToken]
_MAX_FORM_BYTES = 4096
_NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}


class AccessRequest(WriteBody):
    purpose: str


class ReportRequest(WriteBody):
    reason: str


class CredentialAccessView(msgspec.Struct):
    access_token: str
    expires_at: datetime
    accounts: list[AccountView]
    scope: str
    egress: EgressAccessView | None = None
    egress_pending: bool = False


class SecretValue(msgspec.Struct):
    value: str


class TokenAnswer(msgspec.Struct):
    access_token: str
    token_type: str
    expires_in: int
    scope: str


async def provide_service(request: Req, container: VaultDep) -> ServiceToken:
    header = next((v for k, v in request.scope["headers"] if k == b"authorization"), None)
    scheme, _, token = (header or b"").decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("Send a vault token as `Authorization: Bearer <token>`.", code="invalid_token")
    try:
        return container.tokens.verify(token.strip())
    except InvalidServiceToken:
        raise NotAuthenticated("The token is not a live vault token.", code="invalid_token") from None


def _oauth_error(status: int, error: str, description: str, basic: bool = False) -> Response[Any]:
    headers = dict(_NO_STORE)
    if basic:
        headers["www-authenticate"] = 'Basic realm="bulwark-vault"'
    return Response({"error": error, "error_description": description}, status_code=status, headers=headers)


def _client_credentials(request: Req, form: dict[str, list[str]]) -> tuple[str, str, bool]:
    """RFC 6749 2.3.1: HTTP Basic (form-urlencoded id and secret) or the two form fields."""
    header = request.headers.get("authorization")
    if header and header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidClient() from None
        client_id, sep, secret = decoded.partition(":")
        if not sep:
            raise InvalidClient()
        return unquote_plus(client_id), unquote_plus(secret), True
    ids, secrets = form.get("client_id", []), form.get("client_secret", [])
    if len(ids) != 1 or len(secrets) != 1:
        raise InvalidClient()
    return ids[0], secrets[0], False


class VaultController(Controller):
    path = "/vault/v1"
    tags = ["vault"]

    @post("/token", operation_id="vaultToken", status_code=200)
    async def token(self, container: VaultDep, request: Req) -> Response[Any]:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return _oauth_error(400, "invalid_request", "Send application/x-www-form-urlencoded.")
        body = await request.body()
        if len(body) > _MAX_FORM_BYTES:
            return _oauth_error(400, "invalid_request", "The request is too large.")
        try:
            form = parse_qs(body.decode("ascii"), strict_parsing=False, max_num_fields=10)
        except (UnicodeDecodeError, ValueError):
            return _oauth_error(400, "invalid_request", "The form does not parse.")
        if form.get("grant_type") != ["client_credentials"]:
            return _oauth_error(400, "unsupported_grant_type", "Only client_credentials is supported.")
        basic = False
        try:
            client_id, secret, basic = _client_credentials(request, form)
            scope = form.get("scope", [None])[0]
            issued, granted = await container.issue_token(client_id, secret, scope, request_context(request))
        except InvalidClient:
            return _oauth_error(401, "invalid_client", "Client authentication failed.", basic)
        except InvalidScope as error:
            return _oauth_error(400, "invalid_scope", error.detail)
        except RateLimited:
            raise
        answer = TokenAnswer(
            access_token=issued.token,
            token_type="Bearer",  # noqa: S106 - a token kind, not a secret
            expires_in=issued.expires_in,
            scope=" ".join(sorted(granted)),
        )
        return Response(answer, headers=_NO_STORE)

    @post(
        "/broker-connections/{connection_id:uuid}/access",
        operation_id="vaultBrokerAccess",
        status_code=200,
        dependencies={"service": Provide(provide_service)},
    )
    async def broker_access(
        self,
        connection_id: FromPath[UUID],
        data: JSONBody[AccessRequest],
        service: ServiceDep,
        container: VaultDep,
        request: Req,
    ) -> Response[CredentialAccessView]:
        access = await container.access(service, connection_id, data.purpose, request_context(request))
        view = CredentialAccessView(
            access_token=access.access_token,
            expires_at=access.expires_at,
            accounts=[
                AccountView(a.ctid_trader_account_id, a.is_live, a.trader_login, a.broker)
                for a in access.accounts
            ],
            scope=access.scope,
            egress=egress_access_view(access.egress),
            egress_pending=access.egress_pending,
        )
        return Response(view, headers=_NO_STORE)

    @post(
        "/broker-connections/{connection_id:uuid}/report-invalid",
        operation_id="vaultReportInvalid",
        status_code=204,
        dependencies={"service": Provide(provide_service)},
    )
    async def report_invalid(
        self,
        connection_id: FromPath[UUID],
        data: JSONBody[ReportRequest],
        service: ServiceDep,
        container: VaultDep,
        request: Req,
    ) -> None:
        await container.report_invalid(service, connection_id, data.reason, request_context(request))

    @post(
        "/integration-secrets/{secret_id:uuid}/access",
        operation_id="vaultSecretAccess",
        status_code=200,
        dependencies={"service": Provide(provide_service)},
    )
    async def secret_access(
        self,
        secret_id: FromPath[UUID],
        data: JSONBody[AccessRequest],
        service: ServiceDep,
        container: VaultDep,
        request: Req,
    ) -> Response[SecretValue]:
        value = await container.access_secret(service, secret_id, data.purpose, request_context(request))
        try:
            text = value.decode()
        except UnicodeDecodeError:
            raise InvalidInput("The secret is not text.") from None
        return Response(SecretValue(value=text), headers=_NO_STORE)


class VaultHealthController(Controller):
    path = "/healthz"
    tags = ["health"]

    @get("/live", operation_id="vaultLive")
    async def live(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/ready", operation_id="vaultReady")
    async def ready(self, container: VaultDep) -> dict[str, str]:
        try:
            async with asyncio.timeout(3):
                failing = await container.probe.failing()
        except TimeoutError:
            failing = ["database or redis (timed out)"]
        if failing:
            raise DependencyUnavailable(f"Not ready: {', '.join(failing)} unavailable.")
        return {"status": "ok"}
