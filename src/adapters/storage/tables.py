"""The relational schema (SQLAlchemy Core). Domain objects are mapped to and from rows in the
repositories; the domain never sees these tables. Alembic migrations are the source of DDL."""

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    Uuid,
    false,
    text,
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
    # Off by default: an SSO sign-in of a two-factor account still asks for its code unless the
    # org trusts the provider's own MFA (`amr` contains `mfa`).
    Column("trust_sso_mfa", Boolean, nullable=False, server_default=false()),
    # Bumped in the same transaction as any change to who may do what in this org; permission
    # caches are keyed by it, so a bump makes every cached answer for the org unreachable.
    Column("authz_version", BigInteger, nullable=False, server_default="0"),
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
    Column("plan", String(40), nullable=False, server_default="free"),
    # The admin panel's email-prefix search (LIKE 'prefix%'): see migration 0009.
    Index("ix_users_email_prefix", "email", postgresql_ops={"email": "varchar_pattern_ops"}),
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
    # Migration 0016: the revocation store's reload, and the purge of dead sessions.
    Index(
        "ix_sessions_revoked_at",
        "revoked_at",
        postgresql_where=text("revoked_at IS NOT NULL"),
        sqlite_where=text("revoked_at IS NOT NULL"),
    ),
    Index("ix_sessions_absolute_expires_at", "absolute_expires_at"),
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
    Index("ix_one_time_tokens_expires_at", "expires_at"),  # the purge (migration 0015)
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
    # PostgreSQL: taken from audit_events_id_seq (CACHE 1) by each writer, no lock; the table is
    # partitioned by month on occurred_at, so the key includes it. SQLite: assigned under the
    # database's write lock, gap-free. Either way the chain runs in id order.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("occurred_at", UTCDateTime, primary_key=True),
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
    Index("ix_audit_events_org_id_id", "org_id", "id"),
    # An org's audit search filtered by action or actor (migration 0015).
    Index("ix_audit_events_org_id_action_id", "org_id", "action", "id"),
    Index("ix_audit_events_org_id_actor_user_id_id", "org_id", "actor_user_id", "id"),
)

# The chain: one link per entry, written by the sealer in id order (append-only, like the entries).
audit_chain_links = Table(
    "audit_chain_links",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# Partitions detached for archiving: the entries they held are expected to be missing, their links
# (which stay) still carry the chain across them.
audit_archives = Table(
    "audit_archives",
    metadata,
    Column("partition_name", String(63), primary_key=True),
    Column("first_id", BigInteger().with_variant(Integer, "sqlite"), nullable=False),
    Column("last_id", BigInteger().with_variant(Integer, "sqlite"), nullable=False),
    Column("entries", BigInteger().with_variant(Integer, "sqlite"), nullable=False),
    Column("last_hash", String(64), nullable=False),
    Column("detached_at", UTCDateTime, nullable=False),
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
    Index("ix_mfa_challenges_expires_at", "expires_at"),  # the purge (migration 0015)
)

# --- Org-scoped authorization tables: every row carries org_id, every query filters by it, and
# on PostgreSQL row-level security policies refuse rows of any org but the transaction's own.

roles = Table(
    "roles",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("org_id", Uuid, ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("description", String(500), nullable=False, default=""),
    Column("permissions", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=True),
    UniqueConstraint("org_id", "name", name="uq_roles_org_id_name"),
)

member_roles = Table(
    "member_roles",
    metadata,
    Column("org_id", Uuid, primary_key=True),
    Column("user_id", Uuid, primary_key=True),
    Column("role_id", Uuid, primary_key=True),  # a system role id or a custom role of this org
    Column("created_at", UTCDateTime, nullable=False),
    ForeignKeyConstraint(
        ["org_id", "user_id"],
        ["memberships.org_id", "memberships.user_id"],
        name="fk_member_roles_membership",
        ondelete="CASCADE",
    ),
)

groups = Table(
    "groups",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("org_id", Uuid, ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("description", String(500), nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("org_id", "name", name="uq_groups_org_id_name"),
)

group_members = Table(
    "group_members",
    metadata,
    Column("org_id", Uuid, nullable=False),
    Column("group_id", Uuid, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Uuid, primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
    ForeignKeyConstraint(
        ["org_id", "user_id"],
        ["memberships.org_id", "memberships.user_id"],
        name="fk_group_members_membership",
        ondelete="CASCADE",
    ),
    Index("ix_group_members_org_user", "org_id", "user_id"),
)

group_roles = Table(
    "group_roles",
    metadata,
    Column("org_id", Uuid, nullable=False),
    Column("group_id", Uuid, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", Uuid, primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_group_roles_org_id", "org_id"),
)

invitations = Table(
    "invitations",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("org_id", Uuid, ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
    Column("email", String(320), nullable=False),
    Column("org_role", String(40), nullable=False),
    Column("role_ids", JSON, nullable=False),
    Column("group_ids", JSON, nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("invited_by", Uuid, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("accepted_at", UTCDateTime, nullable=True),
    Column("accepted_by", Uuid, nullable=True),
    Index("ix_invitations_org_id", "org_id"),
)

# Broker credentials: the ciphertext opens only in the credential vault (HPKE, key id beside it).
broker_connections = Table(
    "broker_connections",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("org_id", Uuid, ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("label", String(100), nullable=False),
    Column("status", String(20), nullable=False),
    Column("scope", String(20), nullable=False),
    Column("accounts", JSON, nullable=False),
    Column("created_by", Uuid, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=True),
    Column("access_expires_at", UTCDateTime, nullable=True),
    Column("last_refreshed_at", UTCDateTime, nullable=True),
    Column("generation", Integer, nullable=False, default=0),
    Column("refresh_claimed_at", UTCDateTime, nullable=True),
    Column("sealed_key_id", String(64), nullable=True),
    Column("sealed_tokens", LargeBinary, nullable=True),
    Index("ix_broker_connections_org_id", "org_id"),
)

integration_secrets = Table(
    "integration_secrets",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("org_id", Uuid, ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("kind", String(60), nullable=False),
    Column("created_by", Uuid, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sealed_key_id", String(64), nullable=False),
    Column("sealed_value", LargeBinary, nullable=False),
    UniqueConstraint("org_id", "name", name="uq_integration_secrets_org_id_name"),
)

bridges = Table(
    "bridges",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("org_id", Uuid, ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("broker_connection", String(100), nullable=True),
    Column("created_by", Uuid, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=True),
    Column("key_hash", String(64), nullable=False),
    Column("key_prefix", String(40), nullable=False),
    Column("previous_key_hash", String(64), nullable=True),
    Column("previous_valid_until", UTCDateTime, nullable=True),
    Column("status", String(20), nullable=False),
    Column("account_login", BigInteger, nullable=True),
    Column("account_server", String(100), nullable=True),
    Column("account_company", String(200), nullable=True),
    Column("terminal_build", Integer, nullable=True),
    Column("ea_version", String(40), nullable=True),
    Column("last_seen_at", UTCDateTime, nullable=True),
    Column("last_ip", String(64), nullable=True),
    Column("last_heartbeat", JSON, nullable=True),
    Column("version", BigInteger, nullable=False, default=0),
    Index("ix_bridges_org_id", "org_id"),
)

# What bridges report, idempotent on (bridge, ticket): a resent batch changes nothing. Other
# services of the platform read these (under the same row-level security).
bridge_deals = Table(
    "bridge_deals",
    metadata,
    Column("bridge_id", Uuid, ForeignKey("bridges.id", ondelete="CASCADE"), primary_key=True),
    Column("ticket", BigInteger, primary_key=True),
    Column("org_id", Uuid, nullable=False),
    Column("order_ticket", BigInteger, nullable=True),
    Column("time", UTCDateTime, nullable=False),
    Column("symbol", String(40), nullable=False),
    Column("type", String(20), nullable=False),
    Column("entry", String(20), nullable=False),
    Column("volume", Float, nullable=False),
    Column("price", Float, nullable=False),
    Column("profit", Float, nullable=False),
    Column("commission", Float, nullable=False),
    Column("swap", Float, nullable=False),
    Column("magic", BigInteger, nullable=False),
    Column("comment", String(100), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Index("ix_bridge_deals_org_id", "org_id"),
)

bridge_positions = Table(
    "bridge_positions",
    metadata,
    Column("bridge_id", Uuid, ForeignKey("bridges.id", ondelete="CASCADE"), primary_key=True),
    Column("ticket", BigInteger, primary_key=True),
    Column("org_id", Uuid, nullable=False),
    Column("time", UTCDateTime, nullable=False),
    Column("symbol", String(40), nullable=False),
    Column("type", String(20), nullable=False),
    Column("volume", Float, nullable=False),
    Column("price_open", Float, nullable=False),
    Column("sl", Float, nullable=False),
    Column("tp", Float, nullable=False),
    Column("price_current", Float, nullable=False),
    Column("profit", Float, nullable=False),
    Column("swap", Float, nullable=False),
    Column("magic", BigInteger, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Index("ix_bridge_positions_org_id", "org_id"),
)

bridge_commands = Table(
    "bridge_commands",
    metadata,
    # The bridge's polling cursor: increasing, assigned by the database.
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("id", Uuid, nullable=False, unique=True),
    Column("org_id", Uuid, nullable=False),
    Column("bridge_id", Uuid, ForeignKey("bridges.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_by", Uuid, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime, nullable=True),
    Column("acked_at", UTCDateTime, nullable=True),
    Index("ix_bridge_commands_bridge_id_seq", "bridge_id", "seq"),
)

ORG_SCOPED_TABLES = (
    "roles",
    "member_roles",
    "groups",
    "group_members",
    "group_roles",
    "invitations",
    "broker_connections",
    "integration_secrets",
    "bridges",
    "bridge_deals",
    "bridge_positions",
    "bridge_commands",
)

# Pending broker authorisations: looked up by the digest of `state` when the browser returns.
broker_oauth_states = Table(
    "broker_oauth_states",
    metadata,
    Column("state_hash", String(64), primary_key=True),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("org_id", Uuid, ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
    Column("session_id", Uuid, nullable=False),
    Column("scope", String(20), nullable=False),
    Column("connection_id", Uuid, nullable=True),
    Column("browser_hash", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
)

service_clients = Table(
    "service_clients",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("scopes", JSON, nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("previous_secret_hash", String(64), nullable=True),
    Column("previous_valid_until", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("disabled_at", UTCDateTime, nullable=True),
)

# --- Platform administrators: credentials apart from the user's own, and their own sessions.

platform_admins = Table(
    "platform_admins",
    metadata,
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("password_hash", String(512), nullable=False),
    Column("pepper_version", String(64), nullable=False),
    Column("totp_envelope", LargeBinary, nullable=False),
    Column("totp_last_step", BigInteger, nullable=True),
    Column("locked_until", UTCDateTime, nullable=True),
    Column("lock_count", Integer, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=True),
    # Set when a TOTP code first opens an admin session: until then the admin does not count
    # among the active ones the last-admin rule keeps.
    Column("factor_confirmed_at", UTCDateTime, nullable=True),
)

# A promotion waiting for its owner to set their admin credentials by the mailed link.
platform_admin_enrolments = Table(
    "platform_admin_enrolments",
    metadata,
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("invited_by", Uuid, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

platform_admin_recovery_codes = Table(
    "platform_admin_recovery_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("user_id", Uuid, ForeignKey("platform_admins.user_id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
    Index("ix_platform_admin_recovery_codes_user_id", "user_id"),
)

admin_sessions = Table(
    "admin_sessions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, ForeignKey("platform_admins.user_id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime, nullable=False),
    Column("idle_expires_at", UTCDateTime, nullable=False),
    Column("absolute_expires_at", UTCDateTime, nullable=False),
    Column("ip", String(64), nullable=True),
    Column("user_agent", String(512), nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("revoked_reason", String(64), nullable=True),
    Index("ix_admin_sessions_user_id", "user_id"),
)

# --- Account closure: the pipeline's progress (a crash resumes where it stopped), and the
# single-use tokens an administrator confirms a deletion with.

account_closures = Table(
    "account_closures",
    metadata,
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("requested_at", UTCDateTime, nullable=False),
    Column("requested_by", Uuid, nullable=False),
    Column("requested_by_kind", String(20), nullable=False),
    Column("step_reached", String(40), nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
)

admin_deletion_tokens = Table(
    "admin_deletion_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("admin_id", Uuid, ForeignKey("platform_admins.user_id", ondelete="CASCADE"), nullable=False),
    Column("target_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("summary_digest", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
)

# --- Dedicated egress addresses (issue 19): the ledger is the truth about who holds an address.

egress_addresses = Table(
    "egress_addresses",
    metadata,
    Column("address", String(15), primary_key=True),  # dotted IPv4
    Column("provider_ref", String(200), nullable=False),
    Column("state", String(20), nullable=False),
    # The holder while allocated, and the last holder while its teardown runs; never otherwise.
    Column("user_id", Uuid, ForeignKey("users.id"), nullable=True),
    Column("since", UTCDateTime, nullable=False),
    Column("grace_until", UTCDateTime, nullable=True),
    Column("cool_until", UTCDateTime, nullable=True),
    CheckConstraint("state IN ('available', 'allocated', 'draining', 'cooling', 'released')", name="state"),
    # No address is both somebody's and in the pool: the database refuses it, whatever the code.
    CheckConstraint(
        "(state IN ('allocated', 'draining', 'cooling') AND user_id IS NOT NULL) OR "
        "(state IN ('available', 'released') AND user_id IS NULL)",
        name="holder",
    ),
    # One live address per user, enforced by the database (not only by the allocating code).
    Index(
        "uq_egress_addresses_live_user",
        "user_id",
        unique=True,
        postgresql_where=text("state = 'allocated'"),
        sqlite_where=text("state = 'allocated'"),
    ),
    # The allocation's pick (longest-idle available first) reads this index, never sorts the pool.
    Index("ix_egress_addresses_state_since", "state", "since", "address"),
)

# Every transition, who caused it and why (append-only by convention; the audit log has the
# administrators' requests in full).
egress_transitions = Table(
    "egress_transitions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("address", String(15), ForeignKey("egress_addresses.address"), nullable=False),
    Column("from_state", String(20), nullable=True),
    Column("to_state", String(20), nullable=False),
    Column("user_id", Uuid, nullable=True),
    Column("actor", String(60), nullable=False),
    Column("reason", String(200), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_egress_transitions_address_at", "address", "at"),
)

# Paying users the pool had no address for: retried by the job; administrators are told once.
egress_waiting = Table(
    "egress_waiting",
    metadata,
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("since", UTCDateTime, nullable=False),
    Column("attempt_id", Uuid, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", String(200), nullable=False),
    Column("notified_at", UTCDateTime, nullable=True),
)

# --- Single sign-on: pending sign-ins (looked up by the digest of `state`), and the provider
# identities linked to accounts (one account per identity).

sso_states = Table(
    "sso_states",
    metadata,
    Column("state_hash", String(64), primary_key=True),
    Column("provider", String(20), nullable=False),
    Column("purpose", String(10), nullable=False),
    Column("nonce", String(128), nullable=False),
    Column("code_verifier", String(128), nullable=False),
    Column("browser_hash", String(64), nullable=False),
    Column("return_to", String(512), nullable=False),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
    Column("session_id", Uuid, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
    Index("ix_sso_states_expires_at", "expires_at"),
)

sso_identities = Table(
    "sso_identities",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("provider", String(20), nullable=False),
    Column("issuer", String(512), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("email", String(320), nullable=True),
    Column("linked_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime, nullable=True),
    UniqueConstraint("provider", "issuer", "subject", name="uq_sso_identities_provider_issuer_subject"),
    Index("ix_sso_identities_user_id", "user_id"),
)

# Single row: how far the chain is sealed (last_id) and its hash there. Only the sealer moves it on
# PostgreSQL (writers never touch it); SQLite's writers seal inline under their write lock.
audit_chain_head = Table(
    "audit_chain_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("last_id", BigInteger().with_variant(Integer, "sqlite"), nullable=False),
    Column("last_hash", String(64), nullable=False),
)

__all__ = [
    "ORG_SCOPED_TABLES",
    "account_closures",
    "admin_deletion_tokens",
    "admin_sessions",
    "audit_archives",
    "audit_chain_head",
    "audit_chain_links",
    "audit_events",
    "bridge_commands",
    "bridge_deals",
    "bridge_positions",
    "bridges",
    "broker_connections",
    "broker_oauth_states",
    "data_keys",
    "egress_addresses",
    "egress_transitions",
    "egress_waiting",
    "group_members",
    "group_roles",
    "groups",
    "integration_secrets",
    "invitations",
    "member_roles",
    "memberships",
    "metadata",
    "mfa_challenges",
    "one_time_tokens",
    "organisations",
    "platform_admin_enrolments",
    "platform_admin_recovery_codes",
    "platform_admins",
    "recovery_codes",
    "refresh_tokens",
    "roles",
    "service_clients",
    "sessions",
    "sso_identities",
    "sso_states",
    "totp_credentials",
    "users",
]
