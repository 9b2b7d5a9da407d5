"""The relational schema (SQLAlchemy Core). Domain objects are mapped to and from rows in the
repositories; the domain never sees these tables. Alembic migrations are the source of DDL."""

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Uuid,
)

from adapters.storage.types import UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

organisations = Table(
    "organisations",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("personal", Boolean, nullable=False, default=False),
    Column("status", String(20), nullable=False),
    Column("require_2fa", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("display_name", String(200), nullable=False),
    Column("password_hash", String(512), nullable=False),
    Column("pepper_version", String(64), nullable=False),
    Column("platform_role", String(40), nullable=False),
    Column("status", String(20), nullable=False),
    Column("email_verified_at", UTCDateTime, nullable=True),
    Column("default_org_id", Uuid, ForeignKey("organisations.id"), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=True),
)

memberships = Table(
    "memberships",
    metadata,
    Column("org_id", Uuid, ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role", String(40), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_memberships_user_id", "user_id"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("org_id", Uuid, ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime, nullable=False),
    Column("auth_time", UTCDateTime, nullable=False),
    Column("idle_expires_at", UTCDateTime, nullable=False),
    Column("absolute_expires_at", UTCDateTime, nullable=False),
    Column("ip", String(64), nullable=True),
    Column("user_agent", String(512), nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("revoked_reason", String(64), nullable=True),
    Index("ix_sessions_user_id", "user_id"),
    Index("ix_sessions_org_id", "org_id"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("session_id", Uuid, ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("rotated_at", UTCDateTime, nullable=True),
    Column("successor_hash", String(64), nullable=True),
    Index("ix_refresh_tokens_session_id", "session_id"),
)

one_time_tokens = Table(
    "one_time_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("purpose", String(40), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
    Index("ix_one_time_tokens_user_id", "user_id"),
)

data_keys = Table(
    "data_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("master_key_id", String(64), nullable=False),
    Column("wrapped", LargeBinary, nullable=False),
    Column("active", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
)

audit_events = Table(
    "audit_events",
    metadata,
    # Assigned by the writer under the chain lock, so ids are gap-free and follow chain order.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("actor_user_id", Uuid, nullable=True),
    Column("actor_kind", String(20), nullable=False),
    Column("org_id", Uuid, nullable=True),
    Column("action", String(100), nullable=False),
    Column("target_type", String(60), nullable=True),
    Column("target_id", String(200), nullable=True),
    Column("source_ip", String(64), nullable=True),
    Column("user_agent", String(512), nullable=True),
    Column("request_id", String(100), nullable=True),
    Column("details", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_events_org_id_id", "org_id", "id"),
)

totp_credentials = Table(
    "totp_credentials",
    metadata,
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("secret_envelope", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("confirmed_at", UTCDateTime, nullable=True),
    Column("last_step", BigInteger, nullable=True),
)

recovery_codes = Table(
    "recovery_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
    Index("ix_recovery_codes_user_id", "user_id"),
)

mfa_challenges = Table(
    "mfa_challenges",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("failures", Integer, nullable=False, default=0),
    Column("used_at", UTCDateTime, nullable=True),
)

# Single row the audit writer locks so that chain appends are serialised across workers.
audit_chain_head = Table(
    "audit_chain_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("last_id", BigInteger().with_variant(Integer, "sqlite"), nullable=False),
    Column("last_hash", String(64), nullable=False),
)

__all__ = [
    "audit_chain_head",
    "audit_events",
    "data_keys",
    "memberships",
    "metadata",
    "mfa_challenges",
    "one_time_tokens",
    "organisations",
    "recovery_codes",
    "refresh_tokens",
    "sessions",
    "totp_credentials",
    "users",
]
