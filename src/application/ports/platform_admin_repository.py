"""Storage of platform administrators' credentials, recovery codes and admin sessions."""

from datetime import datetime
from typing import Protocol
from uuid import UUID

from domain.platform_admins import AdminSession, PendingAdmin, PlatformAdmin


class PlatformAdminRepository(Protocol):
    async def add(self, admin: PlatformAdmin) -> None:
        """Raises Conflict when the account is an administrator already."""
        ...

    async def get(self, user_id: UUID) -> PlatformAdmin | None: ...

    async def all(self) -> list[PlatformAdmin]: ...

    async def remove(self, user_id: UUID) -> bool:
        """Demote: the row goes, with its recovery codes and admin sessions. False when absent."""
        ...

    async def confirm_factor(self, user_id: UUID, now: datetime) -> bool:
        """Mark the TOTP factor confirmed if it was not yet; True when this call did it."""
        ...

    async def replace_factor(self, user_id: UUID, totp_envelope: bytes, now: datetime) -> None:
        """A new TOTP secret (no step seen yet), confirmed by the operator who set it, unlocked."""
        ...

    async def add_pending(self, pending: PendingAdmin) -> None:
        """Raises Conflict when the account is pending already."""
        ...

    async def get_pending(self, user_id: UUID) -> PendingAdmin | None: ...

    async def all_pending(self) -> list[PendingAdmin]: ...

    async def remove_pending(self, user_id: UUID) -> bool:
        """True for exactly one of concurrent callers (enrolment completes once)."""
        ...

    async def active_locked(self) -> list[UUID]:
        """The user ids of administrators whose accounts are active and whose factor is
        confirmed (pending promotions never count), read under a lock every
        change to that set takes first (PostgreSQL: a transaction advisory lock; SQLite: its
        write lock), so two transactions can never each see the other as the one who remains."""
        ...

    async def advance_totp_step(self, user_id: UUID, step: int) -> bool:
        """Atomically accept `step` only if it is newer than the last accepted one (no replays)."""
        ...

    async def replace_recovery_codes(self, user_id: UUID, code_hashes: list[str], now: datetime) -> None: ...

    async def use_recovery_code(self, user_id: UUID, code_hash: str, now: datetime) -> bool:
        """Atomically mark an unused code used; exactly one concurrent caller gets True."""
        ...

    async def lock(self, user_id: UUID, until: datetime, now: datetime) -> bool:
        """Lock an account that is not locked at `now` and count the lock; of concurrent callers
        exactly one gets True (the one that audits and mails)."""
        ...

    async def clear_lock(self, user_id: UUID) -> bool:
        """Unlock and forget earlier locks (a good login, or an operator's unlock)."""
        ...

    async def start_session(self, session: AdminSession) -> None: ...

    async def get_session(self, session_id: UUID) -> AdminSession | None: ...

    async def touch_session(self, session_id: UUID, now: datetime, idle_expires_at: datetime) -> bool:
        """Slide a live session's idle expiry; False when it was revoked meanwhile."""
        ...

    async def revoke_session(self, session_id: UUID, now: datetime, reason: str) -> bool: ...

    async def revoke_sessions_of(self, user_id: UUID, now: datetime, reason: str) -> int: ...
