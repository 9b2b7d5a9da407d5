"""Administrators managed from the panel: a promotion waits, credential-less, in
`platform_admin_enrolments` until its owner follows the mailed one-time link; an administrator's
TOTP factor counts as confirmed (`factor_confirmed_at`) once a TOTP code has opened an admin
session. Self-contained: existing administrators were made by an operator on the server and count
as confirmed from their creation.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-12 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("platform_admins", schema=None) as batch_op:
        batch_op.add_column(sa.Column("factor_confirmed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE platform_admins SET factor_confirmed_at = created_at")
    op.create_table(
        "platform_admin_enrolments",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("invited_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_platform_admin_enrolments_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_platform_admin_enrolments")),
    )


def downgrade() -> None:
    op.drop_table("platform_admin_enrolments")
    with op.batch_alter_table("platform_admins", schema=None) as batch_op:
        batch_op.drop_column("factor_confirmed_at")
