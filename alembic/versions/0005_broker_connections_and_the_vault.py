"""Broker connections, integration secrets, pending broker authorisations and service clients.

Sealed credentials are org-scoped rows under row-level security like the other tenant tables. The
credential vault serves requests that name a row, not an org, so one SECURITY DEFINER function
(`bulwark_sealed_directory`) lists, across orgs, which rows hold a ciphertext: ids, orgs, key
versions and expiry, never the ciphertext. The vault then declares the row's org and reads it
under the same policies as everybody else.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ORG_SCOPED = ("broker_connections", "integration_secrets")
_ORG_MATCH = "org_id::text = current_setting('bulwark.org_id', true)"

_DIRECTORY = """
CREATE FUNCTION bulwark_sealed_directory()
RETURNS TABLE (table_name text, id uuid, org_id uuid, key_id text, access_expires_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT 'broker_connections', c.id, c.org_id, c.sealed_key_id, c.access_expires_at
      FROM public.broker_connections c WHERE c.sealed_tokens IS NOT NULL
    UNION ALL
    SELECT 'integration_secrets', s.id, s.org_id, s.sealed_key_id, NULL
      FROM public.integration_secrets s
$$
"""

# One row's org by primary key (the directory above is for whole sweeps: refresh-due, rotation).
_ORG_OF = """
CREATE FUNCTION bulwark_sealed_org(table_name text, row_id uuid) RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    -- plpgsql, not sql: its plans are kept per session (the vault asks on every access).
    IF table_name = 'broker_connections' THEN
        RETURN (SELECT c.org_id FROM public.broker_connections c
                 WHERE c.id = row_id AND c.sealed_tokens IS NOT NULL);
    ELSIF table_name = 'integration_secrets' THEN
        RETURN (SELECT s.org_id FROM public.integration_secrets s WHERE s.id = row_id);
    END IF;
    RETURN NULL;
END
$$
"""

# The vault's hot read, one round trip: declares the connection's org for row-level security, then
# reads the connection with what an access is decided on. SECURITY INVOKER: every table is read
# under the caller's policies (only the org lookup goes through the definer function above).
_VAULT_READ = """
CREATE FUNCTION bulwark_vault_read(wanted uuid, client uuid)
RETURNS TABLE (
    id uuid, org_id uuid, kind varchar, label varchar, status varchar, scope varchar, accounts json,
    created_by uuid, created_at timestamptz, access_expires_at timestamptz,
    last_refreshed_at timestamptz, generation integer, refresh_claimed_at timestamptz,
    sealed_key_id varchar, sealed_tokens bytea, org_status varchar, owner_status varchar,
    owner_is_member boolean, client_known boolean, client_disabled boolean
)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
BEGIN
    -- Every name is schema-qualified (pg_catalog is always searched first), so the function
    -- needs no search_path of its own; it runs with the caller's rights anyway.
    PERFORM pg_catalog.set_config(
        'bulwark.org_id', coalesce(public.bulwark_sealed_org('broker_connections', wanted)::text, ''), true
    );
    RETURN QUERY
    SELECT c.id, c.org_id, c.kind, c.label, c.status, c.scope, c.accounts, c.created_by, c.created_at,
           c.access_expires_at, c.last_refreshed_at, c.generation, c.refresh_claimed_at,
           c.sealed_key_id, c.sealed_tokens, o.status, u.status, m.user_id IS NOT NULL,
           sc.id IS NOT NULL, sc.disabled_at IS NOT NULL
      FROM public.broker_connections c
      JOIN public.organisations o ON o.id = c.org_id
      LEFT JOIN public.users u ON u.id = c.created_by
      LEFT JOIN public.memberships m ON m.org_id = c.org_id AND m.user_id = c.created_by
      LEFT JOIN public.service_clients sc ON sc.id = client
     WHERE c.id = wanted;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "broker_connections",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("scope", sa.String(length=20), nullable=False),
        sa.Column("accounts", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("access_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("refresh_claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sealed_key_id", sa.String(length=64), nullable=True),
        sa.Column("sealed_tokens", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
            name=op.f("fk_broker_connections_org_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broker_connections")),
    )
    op.create_index("ix_broker_connections_org_id", "broker_connections", ["org_id"])
    op.create_table(
        "integration_secrets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=60), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sealed_key_id", sa.String(length=64), nullable=False),
        sa.Column("sealed_value", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
            name=op.f("fk_integration_secrets_org_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integration_secrets")),
        sa.UniqueConstraint("org_id", "name", name="uq_integration_secrets_org_id_name"),
    )
    op.create_table(
        "broker_oauth_states",
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("scope", sa.String(length=20), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=True),
        sa.Column("browser_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_broker_oauth_states_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
            name=op.f("fk_broker_oauth_states_org_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("state_hash", name=op.f("pk_broker_oauth_states")),
    )
    op.create_table(
        "service_clients",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("previous_secret_hash", sa.String(length=64), nullable=True),
        sa.Column("previous_valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_clients")),
        sa.UniqueConstraint("name", name=op.f("uq_service_clients_name")),
    )
    if op.get_bind().dialect.name == "postgresql":
        for table in ORG_SCOPED:
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(
                f"CREATE POLICY {table}_org_isolation ON {table} "
                f"USING ({_ORG_MATCH}) WITH CHECK ({_ORG_MATCH})"
            )
        op.execute(_DIRECTORY)
        op.execute(_ORG_OF)
        op.execute(_VAULT_READ)
        op.execute("REVOKE ALL ON FUNCTION bulwark_sealed_directory() FROM PUBLIC")
        op.execute("REVOKE ALL ON FUNCTION bulwark_sealed_org(text, uuid) FROM PUBLIC")
        # The serving role (see `bulwark db grant-service-role`) is granted EXECUTE there.


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS bulwark_vault_read(uuid, uuid)")
        op.execute("DROP FUNCTION IF EXISTS bulwark_sealed_org(text, uuid)")
        op.execute("DROP FUNCTION IF EXISTS bulwark_sealed_directory()")
        for table in ORG_SCOPED:
            op.execute(f"DROP POLICY IF EXISTS {table}_org_isolation ON {table}")
    op.drop_table("service_clients")
    op.drop_table("broker_oauth_states")
    op.drop_table("integration_secrets")
    op.drop_index("ix_broker_connections_org_id", table_name="broker_connections")
    op.drop_table("broker_connections")
