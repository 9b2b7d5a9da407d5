"""Account closures and the erasure of a closed account's personal data, in SQL."""

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.storage.tables import (
    account_closures,
    broker_oauth_states,
    invitations,
    mfa_challenges,
    one_time_tokens,
    platform_admin_enrolments,
    platform_admins,
    recovery_codes,
    sessions,
    sso_identities,
    sso_states,
    totp_credentials,
    users,
)
from domain.account_closure import AccountClosure, ClosureRequester, ClosureStep, steps_before
from domain.users import PlatformRole

_C = account_closures.c
# Never a password: argon2 refuses to parse it, and the hasher then fails closed.
_NO_PASSWORD = "!closed"  # noqa: S105 -- a marker no hash can match, not a secret


def _to_closure(row: Any) -> AccountClosure:
    return AccountClosure(
        user_id=row.user_id,
        requested_at=row.requested_at,
        requested_by=row.requested_by,
        requested_by_kind=ClosureRequester(row.requested_by_kind),
        step_reached=ClosureStep(row.step_reached),
        finished_at=row.finished_at,
    )


class SqlAccountClosureRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def add(self, closure: AccountClosure) -> bool:
        if await self.get(closure.user_id) is not None:
            return False
        await self.connection.execute(
            insert(account_closures).values(
                user_id=closure.user_id,
                requested_at=closure.requested_at,
                requested_by=closure.requested_by,
                requested_by_kind=str(closure.requested_by_kind),
                step_reached=str(closure.step_reached),
                finished_at=closure.finished_at,
            )
        )
        return True

    async def get(self, user_id: UUID) -> AccountClosure | None:
        row = (await self.connection.execute(select(account_closures).where(_C.user_id == user_id))).first()
        return None if row is None else _to_closure(row)

    async def unfinished(self) -> list[AccountClosure]:
        query = select(account_closures).where(_C.finished_at.is_(None)).order_by(_C.requested_at)
        return [_to_closure(row) for row in await self.connection.execute(query)]

    async def advance(self, user_id: UUID, step: ClosureStep) -> None:
        earlier = [str(s) for s in steps_before(step)]
        await self.connection.execute(
            update(account_closures)
            .where((_C.user_id == user_id) & _C.step_reached.in_(earlier))
            .values(step_reached=str(step))
        )

    async def finish(self, user_id: UUID, now: datetime) -> bool:
        result = await self.connection.execute(
            update(account_closures)
            .where((_C.user_id == user_id) & _C.finished_at.is_(None))
            .values(finished_at=now)
        )
        return result.rowcount == 1

    async def erase_personal_data(self, user_id: UUID, placeholder_email: str, now: datetime) -> None:
        address = (
            await self.connection.execute(select(users.c.email).where(users.c.id == user_id))
        ).scalar_one_or_none()
        if address is not None and address != placeholder_email:
            await self._forget_invitations_to(address)
        pending_admin = (
            totp_credentials,
            recovery_codes,
            mfa_challenges,
            one_time_tokens,
            broker_oauth_states,
            platform_admin_enrolments,
            sso_states,
            sso_identities,  # the provider's ids and the address at link time
        )
        for table in pending_admin:
            await self.connection.execute(delete(table).where(table.c.user_id == user_id))
        # Admin credentials go with their recovery codes and admin sessions (cascade).
        await self.connection.execute(delete(platform_admins).where(platform_admins.c.user_id == user_id))
        await self.connection.execute(
            update(sessions).where(sessions.c.user_id == user_id).values(ip=None, user_agent=None)
        )
        await self.connection.execute(
            update(users)
            .where(users.c.id == user_id)
            .values(
                email=placeholder_email,
                display_name="",
                password_hash=_NO_PASSWORD,
                platform_role=str(PlatformRole.USER),
                updated_at=now,
            )
        )

    async def _forget_invitations_to(self, address: str) -> None:
        if self.connection.dialect.name == "postgresql":
            # Invitations are org-scoped under row-level security; the address names no org.
            await self.connection.execute(text("SELECT bulwark_forget_invitations_to(:a)"), {"a": address})
            return
        await self.connection.execute(delete(invitations).where(invitations.c.email == address))
