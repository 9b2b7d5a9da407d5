"""Platform administrators' credentials, recovery codes and admin sessions (SQLAlchemy Core)."""

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import delete, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.storage.tables import (
    admin_sessions,
    platform_admin_enrolments,
    platform_admin_recovery_codes,
    platform_admins,
    users,
)
from application.errors import Conflict
from domain.platform_admins import AdminSession, PendingAdmin, PlatformAdmin
from domain.users import UserStatus

# The advisory lock every change to the set of active administrators takes (an arbitrary
# constant: "bulwark admins" as a 63-bit number).
_ADMIN_SET_LOCK = 0x62756C7761726B41


def _to_admin(row: Any) -> PlatformAdmin:
    return PlatformAdmin(
        user_id=row.user_id,
        password_hash=row.password_hash,
        pepper_version=row.pepper_version,
        totp_envelope=row.totp_envelope,
        created_at=row.created_at,
        totp_last_step=row.totp_last_step,
        locked_until=row.locked_until,
        lock_count=row.lock_count,
        updated_at=row.updated_at,
        factor_confirmed_at=row.factor_confirmed_at,
    )


def _to_pending(row: Any) -> PendingAdmin:
    return PendingAdmin(row.user_id, row.invited_by, row.created_at, row.expires_at)


def _to_session(row: Any) -> AdminSession:
    return AdminSession(
        id=row.id,
        user_id=row.user_id,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        idle_expires_at=row.idle_expires_at,
        absolute_expires_at=row.absolute_expires_at,
        ip=row.ip,
        user_agent=row.user_agent,
        revoked_at=row.revoked_at,
        revoked_reason=row.revoked_reason,
    )


class SqlPlatformAdminRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def active_locked(self) -> list[UUID]:
        if self.connection.dialect.name == "postgresql":
            await self.connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADMIN_SET_LOCK}
            )
        query = (
            select(platform_admins.c.user_id)
            .join(users, users.c.id == platform_admins.c.user_id)
            .where(
                (users.c.status == str(UserStatus.ACTIVE))
                & platform_admins.c.factor_confirmed_at.is_not(None)
            )
        )
        return [row.user_id for row in await self.connection.execute(query)]

    async def add(self, admin: PlatformAdmin) -> None:
        try:
            await self.connection.execute(
                insert(platform_admins).values(
                    user_id=admin.user_id,
                    password_hash=admin.password_hash,
                    pepper_version=admin.pepper_version,
                    totp_envelope=admin.totp_envelope,
                    totp_last_step=admin.totp_last_step,
                    locked_until=admin.locked_until,
                    lock_count=admin.lock_count,
                    created_at=admin.created_at,
                    updated_at=admin.updated_at,
                    factor_confirmed_at=admin.factor_confirmed_at,
                )
            )
        except IntegrityError:
            raise Conflict(
                "This account is a platform administrator already.", code="already_admin"
            ) from None

    async def remove(self, user_id: UUID) -> bool:
        # Explicit rather than by cascade: the codes and sessions must go whatever the
        # connection's foreign-key enforcement.
        for table in (admin_sessions, platform_admin_recovery_codes):
            await self.connection.execute(delete(table).where(table.c.user_id == user_id))
        result = await self.connection.execute(
            delete(platform_admins).where(platform_admins.c.user_id == user_id)
        )
        return result.rowcount == 1

    async def confirm_factor(self, user_id: UUID, now: datetime) -> bool:
        result = await self.connection.execute(
            update(platform_admins)
            .where((platform_admins.c.user_id == user_id) & platform_admins.c.factor_confirmed_at.is_(None))
            .values(factor_confirmed_at=now)
        )
        return result.rowcount == 1

    async def replace_factor(self, user_id: UUID, totp_envelope: bytes, now: datetime) -> None:
        await self.connection.execute(
            update(platform_admins)
            .where(platform_admins.c.user_id == user_id)
            .values(
                totp_envelope=totp_envelope,
                totp_last_step=None,
                factor_confirmed_at=now,
                locked_until=None,
                lock_count=0,
                updated_at=now,
            )
        )

    async def add_pending(self, pending: PendingAdmin) -> None:
        try:
            await self.connection.execute(
                insert(platform_admin_enrolments).values(
                    user_id=pending.user_id,
                    invited_by=pending.invited_by,
                    created_at=pending.created_at,
                    expires_at=pending.expires_at,
                )
            )
        except IntegrityError:
            raise Conflict("This account's promotion is pending already.", code="already_admin") from None

    async def get_pending(self, user_id: UUID) -> PendingAdmin | None:
        query = select(platform_admin_enrolments).where(platform_admin_enrolments.c.user_id == user_id)
        row = (await self.connection.execute(query)).first()
        return _to_pending(row) if row else None

    async def all_pending(self) -> list[PendingAdmin]:
        query = select(platform_admin_enrolments).order_by(platform_admin_enrolments.c.created_at)
        return [_to_pending(row) for row in await self.connection.execute(query)]

    async def remove_pending(self, user_id: UUID) -> bool:
        result = await self.connection.execute(
            delete(platform_admin_enrolments).where(platform_admin_enrolments.c.user_id == user_id)
        )
        return result.rowcount == 1

    async def get(self, user_id: UUID) -> PlatformAdmin | None:
        query = select(platform_admins).where(platform_admins.c.user_id == user_id)
        row = (await self.connection.execute(query)).first()
        return _to_admin(row) if row else None

    async def all(self) -> list[PlatformAdmin]:
        query = select(platform_admins).order_by(platform_admins.c.created_at)
        return [_to_admin(row) for row in await self.connection.execute(query)]

    async def advance_totp_step(self, user_id: UUID, step: int) -> bool:
        result = await self.connection.execute(
            update(platform_admins)
            .where(
                (platform_admins.c.user_id == user_id)
                & or_(platform_admins.c.totp_last_step.is_(None), platform_admins.c.totp_last_step < step)
            )
            .values(totp_last_step=step)
        )
        return result.rowcount == 1

    async def replace_recovery_codes(self, user_id: UUID, code_hashes: list[str], now: datetime) -> None:
        codes = platform_admin_recovery_codes
        await self.connection.execute(delete(codes).where(codes.c.user_id == user_id))
        if code_hashes:
            await self.connection.execute(
                insert(codes),
                [
                    {"code_hash": h, "user_id": user_id, "created_at": now, "used_at": None}
                    for h in code_hashes
                ],
            )

    async def use_recovery_code(self, user_id: UUID, code_hash: str, now: datetime) -> bool:
        codes = platform_admin_recovery_codes
        result = await self.connection.execute(
            update(codes)
            .where(
                (codes.c.code_hash == code_hash) & (codes.c.user_id == user_id) & codes.c.used_at.is_(None)
            )
            .values(used_at=now)
        )
        return result.rowcount == 1

    async def lock(self, user_id: UUID, until: datetime, now: datetime) -> bool:
        # One conditional statement: of concurrent lockers exactly one sees its row change.
        result = await self.connection.execute(
            update(platform_admins)
            .where(
                (platform_admins.c.user_id == user_id)
                & or_(platform_admins.c.locked_until.is_(None), platform_admins.c.locked_until <= now)
            )
            .values(locked_until=until, lock_count=platform_admins.c.lock_count + 1, updated_at=now)
        )
        return result.rowcount == 1

    async def clear_lock(self, user_id: UUID) -> bool:
        result = await self.connection.execute(
            update(platform_admins)
            .where(
                (platform_admins.c.user_id == user_id)
                & or_(platform_admins.c.locked_until.is_not(None), platform_admins.c.lock_count != 0)
            )
            .values(locked_until=None, lock_count=0)
        )
        return result.rowcount == 1

    async def start_session(self, session: AdminSession) -> None:
        await self.connection.execute(
            insert(admin_sessions).values(
                id=session.id,
                user_id=session.user_id,
                created_at=session.created_at,
                last_used_at=session.last_used_at,
                idle_expires_at=session.idle_expires_at,
                absolute_expires_at=session.absolute_expires_at,
                ip=session.ip,
                user_agent=session.user_agent,
                revoked_at=None,
                revoked_reason=None,
            )
        )

    async def get_session(self, session_id: UUID) -> AdminSession | None:
        row = (
            await self.connection.execute(select(admin_sessions).where(admin_sessions.c.id == session_id))
        ).first()
        return _to_session(row) if row else None

    async def touch_session(self, session_id: UUID, now: datetime, idle_expires_at: datetime) -> bool:
        result = await self.connection.execute(
            update(admin_sessions)
            .where((admin_sessions.c.id == session_id) & admin_sessions.c.revoked_at.is_(None))
            .values(last_used_at=now, idle_expires_at=idle_expires_at)
        )
        return result.rowcount == 1

    async def revoke_session(self, session_id: UUID, now: datetime, reason: str) -> bool:
        result = await self.connection.execute(
            update(admin_sessions)
            .where((admin_sessions.c.id == session_id) & admin_sessions.c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )
        return result.rowcount == 1

    async def revoke_sessions_of(self, user_id: UUID, now: datetime, reason: str) -> int:
        result = await self.connection.execute(
            update(admin_sessions)
            .where((admin_sessions.c.user_id == user_id) & admin_sessions.c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )
        return int(result.rowcount)
