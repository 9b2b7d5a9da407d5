"""Organisations, roles, groups and invitations, with PostgreSQL row-level security as a second
wall between tenants: a transaction sees only the rows of the org it declared.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 23:20:11.239483
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "groups",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name=op.f("fk_groups_org_id_organisations"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_groups")),
        sa.UniqueConstraint("org_id", "name", name="uq_groups_org_id_name"),
    )
    op.create_table(
        "invitations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("org_role", sa.String(length=40), nullable=False),
        sa.Column("role_ids", sa.JSON(), nullable=False),
        sa.Column("group_ids", sa.JSON(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("invited_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_by", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
            name=op.f("fk_invitations_org_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_invitations_token_hash")),
    )
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.create_index("ix_invitations_org_id", ["org_id"], unique=False)

    op.create_table(
        "roles",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("permissions", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name=op.f("fk_roles_org_id_organisations"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roles")),
        sa.UniqueConstraint("org_id", "name", name="uq_roles_org_id_name"),
    )
    op.create_table(
        "group_roles",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("role_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name=op.f("fk_group_roles_group_id_groups"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("group_id", "role_id", name=op.f("pk_group_roles")),
    )
    with op.batch_alter_table("group_roles", schema=None) as batch_op:
        batch_op.create_index("ix_group_roles_org_id", ["org_id"], unique=False)

    op.create_table(
        "group_members",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name=op.f("fk_group_members_group_id_groups"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["org_id", "user_id"],
            ["memberships.org_id", "memberships.user_id"],
            name="fk_group_members_membership",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "user_id", name=op.f("pk_group_members")),
    )
    with op.batch_alter_table("group_members", schema=None) as batch_op:
        batch_op.create_index("ix_group_members_org_user", ["org_id", "user_id"], unique=False)

    op.create_table(
        "member_roles",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("role_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id", "user_id"],
            ["memberships.org_id", "memberships.user_id"],
            name="fk_member_roles_membership",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "user_id", "role_id", name=op.f("pk_member_roles")),
    )
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("authz_version", sa.BigInteger(), server_default="0", nullable=False))

    _enable_row_level_security()


# Org-scoped tables: a row is visible only to a transaction that declared its org with
# set_config('bulwark.org_id', ...). Memberships are also visible to the user they belong to
# (bulwark.user_id), for "my organisations". Table owners and superusers bypass RLS, so the service
# must connect as a role of its own (see the README); migrations run as the owner.
ORG_SCOPED = ("roles", "member_roles", "groups", "group_members", "group_roles", "invitations")
_ORG_MATCH = "org_id::text = current_setting('bulwark.org_id', true)"


def _enable_row_level_security() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in ORG_SCOPED:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_org_isolation ON {table} USING ({_ORG_MATCH}) WITH CHECK ({_ORG_MATCH})"
        )
    op.execute("ALTER TABLE memberships ENABLE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY memberships_org_or_self ON memberships "
        f"USING ({_ORG_MATCH} OR user_id::text = current_setting('bulwark.user_id', true)) "
        f"WITH CHECK ({_ORG_MATCH})"
    )


def _disable_row_level_security() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP POLICY IF EXISTS memberships_org_or_self ON memberships")
    op.execute("ALTER TABLE memberships DISABLE ROW LEVEL SECURITY")
    for table in ORG_SCOPED:
        op.execute(f"DROP POLICY IF EXISTS {table}_org_isolation ON {table}")


def downgrade() -> None:
    _disable_row_level_security()
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.drop_column("authz_version")

    op.drop_table("member_roles")
    with op.batch_alter_table("group_members", schema=None) as batch_op:
        batch_op.drop_index("ix_group_members_org_user")

    op.drop_table("group_members")
    with op.batch_alter_table("group_roles", schema=None) as batch_op:
        batch_op.drop_index("ix_group_roles_org_id")

    op.drop_table("group_roles")
    op.drop_table("roles")
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.drop_index("ix_invitations_org_id")

    op.drop_table("invitations")
    op.drop_table("groups")
