"""Account closure (issue 18): the closure pipeline's progress per account, so a crash half-way
resumes where it stopped, and the platform administrators' single-use deletion tokens. On
PostgreSQL, `bulwark_forget_invitations_to` (SECURITY DEFINER) deletes the invitations sent to one
address in every org: the closure must erase an address it cannot name an org for.
Self-contained: no data of earlier tables is touched.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-11 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FORGET_INVITATIONS = """
CREATE FUNCTION bulwark_forget_invitations_to(address text) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    gone integer;
BEGIN
    DELETE FROM public.invitations i WHERE i.email = address;
    GET DIAGNOSTICS gone = ROW_COUNT;
    RETURN gone;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "account_closures",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.Uuid(), nullable=False),
        sa.Column("requested_by_kind", sa.String(length=20), nullable=False),
        sa.Column("step_reached", sa.String(length=40), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_account_closures_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_account_closures")),
    )
    op.create_table(
        "admin_deletion_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("admin_id", sa.Uuid(), nullable=False),
        sa.Column("target_id", sa.Uuid(), nullable=False),
        sa.Column("summary_digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["admin_id"],
            ["platform_admins.user_id"],
            name=op.f("fk_admin_deletion_tokens_admin_id_platform_admins"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_id"],
            ["users.id"],
            name=op.f("fk_admin_deletion_tokens_target_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_admin_deletion_tokens")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FORGET_INVITATIONS)
        op.execute("REVOKE ALL ON FUNCTION bulwark_forget_invitations_to(text) FROM PUBLIC")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS bulwark_forget_invitations_to(text)")
    op.drop_table("admin_deletion_tokens")
    op.drop_table("account_closures")
