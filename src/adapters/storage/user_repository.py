from collections.abc import Mapping
from datetime import datetime
from types import SimpleNamespace
from typing import Any
from uuid import UUID

from sqlalchemy import and_, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.storage.row_security import RowSecurity
from adapters.storage.tables import memberships, users
from application.errors import Conflict
from application.ports.unit_of_work import UserSearch
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
        plan=row.plan,
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
        "plan": user.plan,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    }


# Built once (a login runs both): building a statement costs more than running it.
_BY_ID = select(users).where(users.c.id == bindparam("user_id"))
_BY_EMAIL = select(users).where(users.c.email == bindparam("email"))


def _like_prefix(prefix: str) -> str:
    """`prefix` as a LIKE pattern that matches it literally (its % and _ are not wildcards)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


class SqlUserRepository:
    def __init__(self, connection: AsyncConnection, rls: RowSecurity) -> None:
        self.connection = connection
        self.rls = rls

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
        values = _values(user)
        del values["status"]  # changed only by `set_status`, from the row as it is
        await self.connection.execute(
            update(users)
            .where((users.c.id == user.id) & (users.c.status != str(UserStatus.CLOSED)))
            .values(**values)
        )

    async def set_status(
        self, user_id: UUID, status: UserStatus, now: datetime, only_from: tuple[UserStatus, ...]
    ) -> bool:
        result = await self.connection.execute(
            update(users)
            .where((users.c.id == user_id) & users.c.status.in_([str(s) for s in only_from]))
            .values(status=str(status), updated_at=now)
        )
        return bool(result.rowcount == 1)

    async def search(self, criteria: UserSearch) -> list[User]:
        query = select(users)
        if criteria.email_prefix:
            query = query.where(users.c.email.like(_like_prefix(criteria.email_prefix), escape="\\"))
        if criteria.status is not None:
            query = query.where(users.c.status == str(criteria.status))
        if criteria.plan is not None:
            query = query.where(users.c.plan == criteria.plan)
        if criteria.org_id is not None:
            await self.rls.org(criteria.org_id)  # memberships are org-scoped rows
            query = query.where(
                select(memberships.c.user_id)
                .where((memberships.c.org_id == criteria.org_id) & (memberships.c.user_id == users.c.id))
                .exists()
            )
        if criteria.after is not None:
            email, user_id = criteria.after
            query = query.where(
                or_(users.c.email > email, and_(users.c.email == email, users.c.id > user_id))
            )
        query = query.order_by(users.c.email, users.c.id).limit(criteria.limit)
        return [_to_user(row) for row in await self.connection.execute(query)]
