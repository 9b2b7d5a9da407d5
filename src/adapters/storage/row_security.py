"""Declaring, per transaction, which org (and user) the PostgreSQL row-level security policies
let through. Repositories call these before touching org-scoped tables, so a query that forgets
its `org_id` filter still cannot see another org's rows. SQLite has no RLS: a no-op there."""

from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


class RowSecurity:
    def __init__(self, connection: AsyncConnection, *, in_transaction: bool = True) -> None:
        self.connection = connection
        self.enabled = connection.dialect.name == "postgresql"
        # Without a transaction the declaration would lapse before the next statement, and
        # every org-scoped read would quietly come back empty: refuse instead.
        self.in_transaction = in_transaction
        self._org: UUID | None = None
        self._user: UUID | None = None

    def _require_transaction(self) -> None:
        if not self.in_transaction:
            raise RuntimeError("org-scoped rows need a unit of work with a transaction (not autocommit)")

    async def org(self, org_id: UUID) -> None:
        if not self.enabled:
            return
        self._require_transaction()
        if self._org != org_id:
            await self.connection.execute(
                text("SELECT set_config('bulwark.org_id', :v, true)"), {"v": str(org_id)}
            )
            self._org = org_id

    async def user(self, user_id: UUID) -> None:
        if not self.enabled:
            return
        self._require_transaction()
        if self._user != user_id:
            await self.connection.execute(
                text("SELECT set_config('bulwark.user_id', :v, true)"), {"v": str(user_id)}
            )
            self._user = user_id
