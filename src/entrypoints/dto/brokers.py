"""Bodies of the broker-connection and integration-secret endpoints. Never a token, never a
ciphertext: the views have no field that could carry one."""

from datetime import datetime
from typing import Literal
from uuid import UUID

import msgspec

from entrypoints.dto.identity import WriteBody


class AuthorizeRequest(WriteBody):
    scope: Literal["trading", "accounts"] = "trading"
    connection_id: UUID | None = None  # re-authorise this connection (same id, new tokens)


class AuthorizationUrl(msgspec.Struct):
    authorization_url: str


class AccountView(msgspec.Struct):
    ctid_trader_account_id: int
    is_live: bool
    trader_login: int | None
    broker: str


class BrokerConnectionView(msgspec.Struct):
    id: UUID
    kind: str
    label: str
    status: str
    scope: str
    accounts: list[AccountView]
    created_by: UUID
    created_at: datetime
    access_expires_at: datetime | None
    last_refreshed_at: datetime | None


class BrokerConnectionList(msgspec.Struct):
    connections: list[BrokerConnectionView]


class RenameConnectionRequest(WriteBody):
    label: str


class ConnectionRevoked(msgspec.Struct):
    id: UUID
    status: str
    revoke_at_broker_url: str
    detail: str


class CreateIntegrationSecretRequest(WriteBody):
    name: str
    kind: str
    value: str


class IntegrationSecretView(msgspec.Struct):
    id: UUID
    name: str
    kind: str
    created_by: UUID
    created_at: datetime


class IntegrationSecretList(msgspec.Struct):
    secrets: list[IntegrationSecretView]
