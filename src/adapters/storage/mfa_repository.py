from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.storage.tables import mfa_challenges, recovery_codes, totp_credentials
from domain.mfa import MFA_MAX_FAILURES, MfaChallenge, TotpCredential


def _to_challenge(row: Any) -> MfaChallenge:
    return MfaChallenge(
        token_hash=row.token_hash,
        user_id=row.user_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        failures=row.failures,
        used_at=row.used_at,
    )


# Built once: every login asks.
_TOTP_OF_USER = select(totp_credentials).where(totp_credentials.c.user_id == bindparam("user_id"))


class SqlMfaRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def get_totp(self, user_id: UUID) -> TotpCredential | None:
        row = (await self.connection.execute(_TOTP_OF_USER, {"user_id": user_id})).first()
        if row is None:
            return None
        return TotpCredential(
            user_id=row.user_id,
            secret_envelope=row.secret_envelope,
            created_at=row.created_at,
            confirmed_at=row.confirmed_at,
            last_step=row.last_step,
        )

    async def put_pending_totp(self, credential: TotpCredential) -> None:
        await self.connection.execute(
            delete(totp_credentials).where(
                (totp_credentials.c.user_id == credential.user_id) & totp_credentials.c.confirmed_at.is_(None)
            )
        )
        await self.connection.execute(
            insert(totp_credentials).values(
                user_id=credential.user_id,
                secret_envelope=credential.secret_envelope,
                created_at=credential.created_at,
                confirmed_at=None,
                last_step=None,
            )
        )

    async def confirm_totp(self, user_id: UUID, now: datetime, step: int) -> bool:
        result = await self.connection.execute(
            update(totp_credentials)
            .where((totp_credentials.c.user_id == user_id) & totp_credentials.c.confirmed_at.is_(None))
            .values(confirmed_at=now, last_step=step)
        )
        return result.rowcount == 1

    async def advance_totp_step(self, user_id: UUID, step: int) -> bool:
        result = await self.connection.execute(
            update(totp_credentials)
            .where(
                (totp_credentials.c.user_id == user_id)
                & (totp_credentials.c.last_step.is_(None) | (totp_credentials.c.last_step < step))
            )
            .values(last_step=step)
        )
        return result.rowcount == 1

    async def delete_totp(self, user_id: UUID) -> None:
        await self.connection.execute(delete(totp_credentials).where(totp_credentials.c.user_id == user_id))
        await self.connection.execute(delete(recovery_codes).where(recovery_codes.c.user_id == user_id))

    async def replace_recovery_codes(self, user_id: UUID, code_hashes: list[str], now: datetime) -> None:
        await self.connection.execute(delete(recovery_codes).where(recovery_codes.c.user_id == user_id))
        if code_hashes:
            await self.connection.execute(
                insert(recovery_codes),
                [
                    {"code_hash": h, "user_id": user_id, "created_at": now, "used_at": None}
                    for h in code_hashes
                ],
            )

    async def use_recovery_code(self, user_id: UUID, code_hash: str, now: datetime) -> bool:
        result = await self.connection.execute(
            update(recovery_codes)
            .where(
                (recovery_codes.c.code_hash == code_hash)
                & (recovery_codes.c.user_id == user_id)
                & recovery_codes.c.used_at.is_(None)
            )
            .values(used_at=now)
        )
        return result.rowcount == 1

    async def recovery_codes_left(self, user_id: UUID) -> int:
        query = select(func.count()).where(
            (recovery_codes.c.user_id == user_id) & recovery_codes.c.used_at.is_(None)
        )
        return int((await self.connection.execute(query)).scalar_one())

    async def drop_challenges(self, user_id: UUID) -> None:
        await self.connection.execute(delete(mfa_challenges).where(mfa_challenges.c.user_id == user_id))

    async def add_challenge(self, challenge: MfaChallenge) -> None:
        await self.connection.execute(
            insert(mfa_challenges).values(
                token_hash=challenge.token_hash,
                user_id=challenge.user_id,
                created_at=challenge.created_at,
                expires_at=challenge.expires_at,
                failures=challenge.failures,
                used_at=challenge.used_at,
            )
        )

    async def get_challenge(self, token_hash: str) -> MfaChallenge | None:
        query = select(mfa_challenges).where(mfa_challenges.c.token_hash == token_hash)
        row = (await self.connection.execute(query)).first()
        return _to_challenge(row) if row else None

    async def record_challenge_failure(self, token_hash: str) -> None:
        await self.connection.execute(
            update(mfa_challenges)
            .where(mfa_challenges.c.token_hash == token_hash)
            .values(failures=mfa_challenges.c.failures + 1)
        )

    async def consume_challenge(self, token_hash: str, now: datetime) -> bool:
        result = await self.connection.execute(
            update(mfa_challenges)
            .where(
                (mfa_challenges.c.token_hash == token_hash)
                & mfa_challenges.c.used_at.is_(None)
                & (mfa_challenges.c.failures < MFA_MAX_FAILURES)
                & (mfa_challenges.c.expires_at > now)
            )
            .values(used_at=now)
        )
        return result.rowcount == 1
