from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.storage.tables import users
from application.errors import Conflict
from domain.users import PlatformRole, User, UserStatus


def _to_user(row: Any) -> User:
    return User(
        id=row.id,
        email=row.email,
        display_name=row.display_name,
        password_hash=row.password_hash,
        pepper_version=row.pepper_version,
        created_at=row.created_at,
        platform_role=PlatformRole(row.platform_role),
        status=UserStatus(row.status),
        email_verified_at=row.email_verified_at,
        default_org_id=row.default_org_id,
        updated_at=row.updated_at,
    )


def user_from_mapping(values: Mapping[str, Any]) -> User:
    return _to_user(SimpleNamespace(**values))


def _values(user: User) -> dict[str, Any]:
    return {
        "email": user.email,
        "display_name": user.display_name,
        "password_hash": user.password_hash,
        "pepper_version": user.pepper_version,
        "platform_role": str(user.platform_role),
        "status": str(user.status),
        "email_verified_at": user.email_verified_at,
        "default_org_id": user.default_org_id,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    }


# Built once (a login runs both): building a statement costs more than running it.
_BY_ID = select(users).where(users.c.id == bindparam("user_id"))
_BY_EMAIL = select(users).where(users.c.email == bindparam("email"))


class SqlUserRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def add(self, user: User) -> None:
        try:
            await self.connection.execute(insert(users).values(id=user.id, **_values(user)))
        except IntegrityError:
            raise Conflict("An account with this email exists.", code="email_taken") from None

    async def get(self, user_id: UUID) -> User | None:
        row = (await self.connection.execute(_BY_ID, {"user_id": user_id})).first()
        return _to_user(row) if row else None

    async def get_by_email(self, email: str) -> User | None:
        row = (await self.connection.execute(_BY_EMAIL, {"email": email})).first()
        return _to_user(row) if row else None

    async def update(self, user: User) -> None:
        await self.connection.execute(update(users).where(users.c.id == user.id).values(**_values(user)))
