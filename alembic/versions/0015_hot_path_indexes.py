"""Indexes that production-sized data needs (issue 21): with millions of sessions, one-time tokens
and audit entries, the revocation store's reload (sessions revoked since ...), the housekeeping
jobs' purges (what expired before ...) and an org's filtered audit search would otherwise read
whole tables, or a whole org's history.

- `sessions.revoked_at`, partial (revoked sessions only): the revocation store reloads the
  sessions revoked within one access-token lifetime when Redis comes back empty.
- `sessions.absolute_expires_at`: the purge finds sessions past their absolute lifetime. Not
  `idle_expires_at`: every refresh updates that column, and an index on it would end the
  heap-only (HOT) updates that keep refreshes cheap.
- `one_time_tokens.expires_at`, `mfa_challenges.expires_at`: the purge of spent tokens.
- `audit_events (org_id, action, id)` and `(org_id, actor_user_id, id)`: an org's audit search
  filtered by action or by actor. With only `(org_id, id)`, a filter matching few of a large org's
  entries read the org's whole history (200,000 entries: 8 s) to fill a page.

On PostgreSQL each index is built CONCURRENTLY, outside the migration's transaction, so a
deployment upgrading a live database does not block logins and refreshes while 5 million rows
are indexed. An interrupted build leaves an INVALID index; upgrade drops it and builds again. The
audit log's two are the exception: it is partitioned by month (0014), and PostgreSQL builds an
index on a partitioned table on all partitions at once, never concurrently (audited writes wait
for the build; run this migration in a quiet hour on a large log).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 10:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (name, table, columns, only rows where the first column is set)
_INDEXES = (
    ("ix_sessions_revoked_at", "sessions", ["revoked_at"], True),
    ("ix_sessions_absolute_expires_at", "sessions", ["absolute_expires_at"], False),
    ("ix_one_time_tokens_expires_at", "one_time_tokens", ["expires_at"], False),
    ("ix_mfa_challenges_expires_at", "mfa_challenges", ["expires_at"], False),
    ("ix_audit_events_org_id_action_id", "audit_events", ["org_id", "action", "id"], False),
    ("ix_audit_events_org_id_actor_user_id_id", "audit_events", ["org_id", "actor_user_id", "id"], False),
)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, table, columns, partial in _INDEXES:
        where = sa.text(f"{columns[0]} IS NOT NULL") if partial else None
        if not postgres:
            op.create_index(name, table, columns, sqlite_where=where)
            continue
        if table == "audit_events":
            # Partitioned by month (migration 0014): PostgreSQL builds an index on a partitioned
            # table on every partition at once and cannot do it CONCURRENTLY.
            op.execute(f"DROP INDEX IF EXISTS {name}")
            op.create_index(name, table, columns, postgresql_where=where)
            continue
        with op.get_context().autocommit_block():
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")  # a build interrupted earlier
            op.create_index(name, table, columns, postgresql_where=where, postgresql_concurrently=True)


def downgrade() -> None:
    for name, table, _, _ in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
