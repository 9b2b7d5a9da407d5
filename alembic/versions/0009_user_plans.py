"""Each account's plan (`free` until a platform administrator changes it), and an index for the
admin panel's case-insensitive email-prefix search (emails are stored in canonical lower case, so
a LIKE 'prefix%' on PostgreSQL needs the pattern operator class whatever the collation).
Self-contained: existing accounts get the default plan.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-11 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("plan", sa.String(length=40), server_default="free", nullable=False))
    # PostgreSQL: the pattern operator class (LIKE 'prefix%' whatever the collation); SQLite
    # takes the plain index.
    op.create_index(
        "ix_users_email_prefix", "users", ["email"], postgresql_ops={"email": "varchar_pattern_ops"}
    )


def downgrade() -> None:
    op.drop_index("ix_users_email_prefix", table_name="users")
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("plan")
