"""The org administrator role and the Administrator system role become one thing: every org
administrator holds the Administrator role directly, and every direct holder of the Administrator
role is an org administrator. Rows written before the rule (an administrator invited without the
role, or the role handed to a member by someone who held every permission) are repaired in the
direction that takes nobody's rights away: the grant was made by someone entitled to make it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 02:10:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# domain.permissions.ADMINISTRATOR_ROLE_ID, fixed forever (a uuid5 under the system-role namespace).
ADMINISTRATOR_ROLE_ID = UUID("b16d1566-f356-552d-b4c8-78a6020b3987")

memberships = sa.table(
    "memberships",
    sa.column("org_id", sa.Uuid()),
    sa.column("user_id", sa.Uuid()),
    sa.column("role", sa.String()),
)
member_roles = sa.table(
    "member_roles",
    sa.column("org_id", sa.Uuid()),
    sa.column("user_id", sa.Uuid()),
    sa.column("role_id", sa.Uuid()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    bind = op.get_bind()
    administrators = {
        (row.org_id, row.user_id)
        for row in bind.execute(
            sa.select(memberships.c.org_id, memberships.c.user_id).where(
                memberships.c.role == "administrator"
            )
        )
    }
    holders = {
        (row.org_id, row.user_id)
        for row in bind.execute(
            sa.select(member_roles.c.org_id, member_roles.c.user_id).where(
                member_roles.c.role_id == ADMINISTRATOR_ROLE_ID
            )
        )
    }
    now = datetime.now(UTC)
    if bind.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # stored as naive UTC there, like UTCDateTime does
    for org_id, user_id in sorted(administrators - holders):
        bind.execute(
            sa.insert(member_roles).values(
                org_id=org_id, user_id=user_id, role_id=ADMINISTRATOR_ROLE_ID, created_at=now
            )
        )
    for org_id, user_id in sorted(holders - administrators):
        bind.execute(
            sa.update(memberships)
            .where((memberships.c.org_id == org_id) & (memberships.c.user_id == user_id))
            .values(role="administrator")
        )


def downgrade() -> None:
    """Nothing to undo: the repaired rows were valid under the old rules too."""
