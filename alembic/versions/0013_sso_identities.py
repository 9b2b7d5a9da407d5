"""Single sign-on (issue 20): pending SSO sign-ins (single use, ten minutes, bound to the
browser), the provider identities linked to accounts, and the organisation setting that lets a
provider's own MFA stand in for the second factor (off by default). Self-contained: no data of
earlier tables is touched; existing organisations get the setting off.

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-04 10:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("organisations") as batch:
        batch.add_column(sa.Column("trust_sso_mfa", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        "sso_states",
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("purpose", sa.String(length=10), nullable=False),
        sa.Column("nonce", sa.String(length=128), nullable=False),
        sa.Column("code_verifier", sa.String(length=128), nullable=False),
        sa.Column("browser_hash", sa.String(length=64), nullable=False),
        sa.Column("return_to", sa.String(length=512), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_sso_states_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("state_hash", name=op.f("pk_sso_states")),
    )
    op.create_index("ix_sso_states_expires_at", "sso_states", ["expires_at"])
    op.create_table(
        "sso_identities",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("issuer", sa.String(length=512), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_sso_identities_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sso_identities")),
        sa.UniqueConstraint(
            "provider", "issuer", "subject", name="uq_sso_identities_provider_issuer_subject"
        ),
    )
    op.create_index("ix_sso_identities_user_id", "sso_identities", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_sso_identities_user_id", table_name="sso_identities")
    op.drop_table("sso_identities")
    op.drop_index("ix_sso_states_expires_at", table_name="sso_states")
    op.drop_table("sso_states")
    with op.batch_alter_table("organisations") as batch:
        batch.drop_column("trust_sso_mfa")
