"""Domain -> DTO for broker connections and integration secrets, in one place."""

from domain.brokers import BrokerConnection, IntegrationSecret
from entrypoints.dto.brokers import AccountView, BrokerConnectionView, IntegrationSecretView


def connection_view(connection: BrokerConnection) -> BrokerConnectionView:
    return BrokerConnectionView(
        id=connection.id,
        kind=str(connection.kind),
        label=connection.label,
        status=str(connection.status),
        scope=str(connection.scope),
        accounts=[
            AccountView(
                ctid_trader_account_id=a.ctid_trader_account_id,
                is_live=a.is_live,
                trader_login=a.trader_login,
                broker=a.broker,
            )
            for a in connection.accounts
        ],
        created_by=connection.created_by,
        created_at=connection.created_at,
        access_expires_at=connection.access_expires_at,
        last_refreshed_at=connection.last_refreshed_at,
    )


def secret_view(secret: IntegrationSecret) -> IntegrationSecretView:
    return IntegrationSecretView(
        id=secret.id,
        name=secret.name,
        kind=secret.kind,
        created_by=secret.created_by,
        created_at=secret.created_at,
    )
