"""Bridges' last-seen marks written in batches: one statement per flush for marks of many orgs.

A batch spans orgs, so it cannot declare one org for row-level security; `bulwark_bridges_seen`
(SECURITY DEFINER) updates only the last-seen columns, of rows matched on id AND org, still
usable, and only forward in time. What it is given was checked by the bridge's key first.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 08:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SIGNATURE = "bulwark_bridges_seen(uuid[], uuid[], timestamptz[], text[], text[])"
_SEEN = """
CREATE FUNCTION bulwark_bridges_seen(ids uuid[], orgs uuid[], seen timestamptz[], ips text[],
                                     beats text[]) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    changed integer;
BEGIN
    UPDATE public.bridges b
       SET last_seen_at = u.seen,
           last_ip = left(u.ip, 64),
           last_heartbeat = COALESCE(u.beat::json, b.last_heartbeat),
           status = 'online'
      FROM unnest(ids, orgs, seen, ips, beats) AS u(id, org_id, seen, ip, beat)
     WHERE b.id = u.id
       AND b.org_id = u.org_id
       AND b.status IN ('online', 'offline')
       AND (b.last_seen_at IS NULL OR b.last_seen_at <= u.seen);
    GET DIAGNOSTICS changed = ROW_COUNT;
    RETURN changed;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_SEEN)
        op.execute(f"REVOKE ALL ON FUNCTION {_SIGNATURE} FROM PUBLIC")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION {_SIGNATURE}")
