"""Dedicated egress addresses (issue 19): the ledger of addresses and their holders, every
transition with who and why, and the paying users waiting for an address. The database enforces
exclusivity: one live address per user (a partial unique index on allocated rows), and no address
is both somebody's and in the pool (a check constraint). Self-contained.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 10:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE = sa.text("state = 'allocated'")


def upgrade() -> None:
    op.create_table(
        "egress_addresses",
        sa.Column("address", sa.String(length=15), nullable=False),
        sa.Column("provider_ref", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("grace_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cool_until", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('available', 'allocated', 'draining', 'cooling', 'released')",
            name=op.f("ck_egress_addresses_state"),
        ),
        sa.CheckConstraint(
            "(state IN ('allocated', 'draining', 'cooling') AND user_id IS NOT NULL) OR "
            "(state IN ('available', 'released') AND user_id IS NULL)",
            name=op.f("ck_egress_addresses_holder"),
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_egress_addresses_user_id_users")),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_egress_addresses")),
    )
    op.create_index(
        "uq_egress_addresses_live_user",
        "egress_addresses",
        ["user_id"],
        unique=True,
        postgresql_where=_LIVE,
        sqlite_where=_LIVE,
    )
    op.create_index(
        "ix_egress_addresses_state_since", "egress_addresses", ["state", "since", "address"], unique=False
    )
    op.create_table(
        "egress_transitions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("address", sa.String(length=15), nullable=False),
        sa.Column("from_state", sa.String(length=20), nullable=True),
        sa.Column("to_state", sa.String(length=20), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("actor", sa.String(length=60), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["address"],
            ["egress_addresses.address"],
            name=op.f("fk_egress_transitions_address_egress_addresses"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_egress_transitions")),
    )
    op.create_index("ix_egress_transitions_address_at", "egress_transitions", ["address", "at"], unique=False)
    op.create_table(
        "egress_waiting",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempt_id", sa.Uuid(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_egress_waiting_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_egress_waiting")),
    )


def downgrade() -> None:
    op.drop_table("egress_waiting")
    op.drop_index("ix_egress_transitions_address_at", table_name="egress_transitions")
    op.drop_table("egress_transitions")
    op.drop_index("ix_egress_addresses_state_since", table_name="egress_addresses")
    op.drop_index("uq_egress_addresses_live_user", table_name="egress_addresses")
    op.drop_table("egress_addresses")
