"""MT5 bridges: per-bridge keys (HMAC-SHA-256 of a 256-bit secret), the account a key is bound
to, and when it was last seen; org-scoped under row-level security like the other tenant tables.
A bridge request names a bridge, not an org: `bulwark_bridge_org` (SECURITY DEFINER, ids only)
finds its org, which the request then declares before reading the row.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 06:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ORG_SCOPED = ("bridges", "bridge_deals", "bridge_positions", "bridge_commands")
_ORG_MATCH = "org_id::text = current_setting('bulwark.org_id', true)"

_BRIDGE_ORG = """
CREATE FUNCTION bulwark_bridge_org(wanted uuid) RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RETURN (SELECT b.org_id FROM public.bridges b WHERE b.id = wanted);
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "bridges",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("broker_connection", sa.String(length=100), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("key_prefix", sa.String(length=40), nullable=False),
        sa.Column("previous_key_hash", sa.String(length=64), nullable=True),
        sa.Column("previous_valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("account_login", sa.BigInteger(), nullable=True),
        sa.Column("account_server", sa.String(length=100), nullable=True),
        sa.Column("account_company", sa.String(length=200), nullable=True),
        sa.Column("terminal_build", sa.Integer(), nullable=True),
        sa.Column("ea_version", sa.String(length=40), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_ip", sa.String(length=64), nullable=True),
        sa.Column("last_heartbeat", sa.JSON(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name=op.f("fk_bridges_org_id_organisations"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bridges")),
    )
    op.create_index("ix_bridges_org_id", "bridges", ["org_id"])
    _reports()
    if op.get_bind().dialect.name == "postgresql":
        for table in ORG_SCOPED:
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            policy = f"CREATE POLICY {table}_org_isolation ON {table}"
            op.execute(f"{policy} USING ({_ORG_MATCH}) WITH CHECK ({_ORG_MATCH})")
        op.execute(_BRIDGE_ORG)
        op.execute("REVOKE ALL ON FUNCTION bulwark_bridge_org(uuid) FROM PUBLIC")


def _reports() -> None:
    """Deals, positions and commands: org-scoped rows keyed by their bridge."""
    op.create_table(
        "bridge_deals",
        sa.Column("bridge_id", sa.Uuid(), nullable=False),
        sa.Column("ticket", sa.BigInteger(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("order_ticket", sa.BigInteger(), nullable=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("symbol", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("entry", sa.String(length=20), nullable=False),
        sa.Column("volume", sa.Float(), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("profit", sa.Float(), nullable=False),
        sa.Column("commission", sa.Float(), nullable=False),
        sa.Column("swap", sa.Float(), nullable=False),
        sa.Column("magic", sa.BigInteger(), nullable=False),
        sa.Column("comment", sa.String(length=100), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["bridge_id"], ["bridges.id"], name=op.f("fk_bridge_deals_bridge_id_bridges"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("bridge_id", "ticket", name=op.f("pk_bridge_deals")),
    )
    op.create_index("ix_bridge_deals_org_id", "bridge_deals", ["org_id"])
    op.create_table(
        "bridge_positions",
        sa.Column("bridge_id", sa.Uuid(), nullable=False),
        sa.Column("ticket", sa.BigInteger(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("symbol", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("volume", sa.Float(), nullable=False),
        sa.Column("price_open", sa.Float(), nullable=False),
        sa.Column("sl", sa.Float(), nullable=False),
        sa.Column("tp", sa.Float(), nullable=False),
        sa.Column("price_current", sa.Float(), nullable=False),
        sa.Column("profit", sa.Float(), nullable=False),
        sa.Column("swap", sa.Float(), nullable=False),
        sa.Column("magic", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["bridge_id"],
            ["bridges.id"],
            name=op.f("fk_bridge_positions_bridge_id_bridges"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("bridge_id", "ticket", name=op.f("pk_bridge_positions")),
    )
    op.create_index("ix_bridge_positions_org_id", "bridge_positions", ["org_id"])
    op.create_table(
        "bridge_commands",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("bridge_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["bridge_id"],
            ["bridges.id"],
            name=op.f("fk_bridge_commands_bridge_id_bridges"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_bridge_commands")),
        sa.UniqueConstraint("id", name=op.f("uq_bridge_commands_id")),
    )
    op.create_index("ix_bridge_commands_bridge_id_seq", "bridge_commands", ["bridge_id", "seq"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS bulwark_bridge_org(uuid)")
        for table in ORG_SCOPED:
            op.execute(f"DROP POLICY IF EXISTS {table}_org_isolation ON {table}")
    op.drop_table("bridge_commands")
    op.drop_table("bridge_positions")
    op.drop_table("bridge_deals")
    op.drop_index("ix_bridges_org_id", table_name="bridges")
    op.drop_table("bridges")
