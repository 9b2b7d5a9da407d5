"""Domain objects the storage tests insert: a verified user of an org, and a live session."""

import uuid
from datetime import datetime, timedelta

from domain.orgs import Organisation
from domain.sessions import Session
from domain.users import User


def new_org(now: datetime) -> Organisation:
    return Organisation(id=uuid.uuid4(), name="Desk", created_at=now)


def new_user(org: Organisation, now: datetime) -> User:
    return User(
        id=uuid.uuid4(),
        email=f"{uuid.uuid4().hex[:8]}@example.com",
        display_name="T",
        password_hash="x",
        pepper_version="p",
        created_at=now,
        default_org_id=org.id,
        email_verified_at=now,
    )


def new_session(user: User, now: datetime, ip: str | None = None, user_agent: str | None = None) -> Session:
    return Session(
        id=uuid.uuid4(),
        user_id=user.id,
        org_id=user.default_org_id,
        created_at=now,
        last_used_at=now,
        auth_time=now,
        idle_expires_at=now + timedelta(days=7),
        absolute_expires_at=now + timedelta(days=30),
        ip=ip,
        user_agent=user_agent,
    )
