"""One database transaction holding every repository; rolled back unless committed."""

from datetime import datetime, timedelta
from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from adapters.storage.account_closure_repository import SqlAccountClosureRepository
from adapters.storage.audit_log import SqlAuditLog
from adapters.storage.audit_query import SqlAuditQuery
from adapters.storage.authz_repository import SqlAuthzRepository
from adapters.storage.bridge_report_repository import SqlBridgeReportRepository
from adapters.storage.bridge_repository import SqlBridgeRepository
from adapters.storage.broker_connection_repository import SqlBrokerConnectionRepository
from adapters.storage.deletion_token_repository import SqlDeletionTokenRepository
from adapters.storage.egress_repository import SqlEgressRepository
from adapters.storage.integration_secret_repository import SqlIntegrationSecretRepository
from adapters.storage.mfa_repository import SqlMfaRepository
from adapters.storage.one_time_token_repository import SqlOneTimeTokenRepository
from adapters.storage.org_repository import SqlOrgRepository
from adapters.storage.platform_admin_repository import SqlPlatformAdminRepository
from adapters.storage.row_security import RowSecurity
from adapters.storage.service_client_repository import SqlServiceClientRepository
from adapters.storage.session_repository import SqlSessionRepository, refresh_alone
from adapters.storage.user_repository import SqlUserRepository
from application.ports.unit_of_work import RefreshAttempt


class SqlUnitOfWork:
    users: SqlUserRepository
    orgs: SqlOrgRepository
    sessions: SqlSessionRepository
    one_time_tokens: SqlOneTimeTokenRepository
    audit: SqlAuditLog
    mfa: SqlMfaRepository
    authz: SqlAuthzRepository
    audit_query: SqlAuditQuery
    broker_connections: SqlBrokerConnectionRepository
    integration_secrets: SqlIntegrationSecretRepository
    service_clients: SqlServiceClientRepository
    bridges: SqlBridgeRepository
    bridge_reports: SqlBridgeReportRepository
    platform_admins: SqlPlatformAdminRepository
    account_closures: SqlAccountClosureRepository
    deletion_tokens: SqlDeletionTokenRepository
    egress: SqlEgressRepository

    def __init__(self, engine: AsyncEngine, *, autocommit: bool = False) -> None:
        self.engine = engine
        # PostgreSQL only: SQLite's transactions begin IMMEDIATE (its write lock) by design, and
        # its multi-statement fallbacks (rotation, audit append) need the transaction.
        self._autocommit = autocommit and engine.dialect.name == "postgresql"
        self._connection: AsyncConnection | None = None
        self._transaction: AsyncTransaction | None = None

    async def __aenter__(self) -> Self:
        self._connection = await self.engine.connect()
        if self._autocommit:
            await self._connection.execution_options(isolation_level="AUTOCOMMIT")
        else:
            self._transaction = await self._connection.begin()
        connection = self._connection
        rls = RowSecurity(connection, in_transaction=not self._autocommit)
        self.users = SqlUserRepository(connection, rls)
        self.orgs = SqlOrgRepository(connection, rls)
        self.sessions = SqlSessionRepository(connection)
        self.one_time_tokens = SqlOneTimeTokenRepository(connection)
        self.audit = SqlAuditLog(connection, in_transaction=not self._autocommit)
        self.mfa = SqlMfaRepository(connection)
        self.authz = SqlAuthzRepository(connection, rls)
        self.audit_query = SqlAuditQuery(connection)
        self.broker_connections = SqlBrokerConnectionRepository(connection, rls)
        self.integration_secrets = SqlIntegrationSecretRepository(connection, rls)
        self.service_clients = SqlServiceClientRepository(connection)
        self.bridges = SqlBridgeRepository(connection, rls)
        self.bridge_reports = SqlBridgeReportRepository(connection, rls)
        self.platform_admins = SqlPlatformAdminRepository(connection)
        self.account_closures = SqlAccountClosureRepository(connection)
        self.deletion_tokens = SqlDeletionTokenRepository(connection)
        self.egress = SqlEgressRepository(connection)
        return self

    async def commit(self) -> None:
        if self._autocommit:
            return  # every statement has committed on its own
        assert self._transaction is not None, "commit outside `async with`"
        await self._transaction.commit()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._transaction is not None and self._transaction.is_active:
                await self._transaction.rollback()
        finally:
            if self._connection is not None:
                await self._connection.close()
            self._connection = None
            self._transaction = None


class SqlUnitOfWorkFactory:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def __call__(self, *, autocommit: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, autocommit=autocommit)

    async def refresh(
        self, token_hash: str, successor_hash: str, now: datetime, idle: timedelta
    ) -> RefreshAttempt | None:
        if self.engine.dialect.name == "postgresql":
            return await refresh_alone(self.engine, token_hash, successor_hash, now, idle)
        async with self() as uow:
            attempt = await uow.sessions.refresh(token_hash, successor_hash, now, idle)
            await uow.commit()
        return attempt
