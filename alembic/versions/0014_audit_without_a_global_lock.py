"""The audit log without a global lock (issue 21): entries are appended freely and chained
afterwards by the sealer; on PostgreSQL the entries live in monthly partitions.

- `audit_chain_links` (id, prev_hash, hash): the chain, one link per entry, append-only. The
  existing entries' prev_hash/hash move there unchanged, so every existing entry still verifies
  under the same rule, and `audit_chain_head` (already the hash of the last entry) becomes how far
  the chain is sealed.
- `audit_archives`: partitions detached for archiving (the chain's links stay and carry it across).
- PostgreSQL: `audit_events` is re-created partitioned by month on occurred_at (its key becomes
  (id, occurred_at)), its ids taken from `audit_events_id_seq` (CACHE 1, which the sealer needs),
  and the rows copied over. `bulwark_audit_partitions_ahead(months)` (SECURITY DEFINER) creates
  this month's and the next months' partitions for the service role's housekeeping job.
- SQLite: the table is rebuilt without the hash columns; appends there seal inline.

The append-only triggers cover the entries (every partition), the links and the archives.
Downgrade puts the hashes back on the entries; it refuses while entries are unsealed.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 10:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONTHS_AHEAD = 3
_PROTECTED = ("audit_chain_links", "audit_archives")

_EVENT_COLUMNS = (
    "id, occurred_at, actor_user_id, actor_kind, org_id, action, target_type, target_id, "
    "source_ip, user_agent, request_id, details"
)

_PARTITIONED_EVENTS = """
CREATE TABLE audit_events (
    id bigint NOT NULL DEFAULT nextval('audit_events_id_seq'),
    occurred_at timestamptz NOT NULL,
    actor_user_id uuid,
    actor_kind varchar(20) NOT NULL,
    org_id uuid,
    action varchar(100) NOT NULL,
    target_type varchar(60),
    target_id varchar(200),
    source_ip varchar(64),
    user_agent varchar(512),
    request_id varchar(100),
    details json NOT NULL,
    CONSTRAINT pk_audit_events PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at)
"""

# One month's partition, named audit_events_yYYYYmMM, with the TRUNCATE guard of its own (row
# triggers are cloned from the parent; a statement trigger is not). Owner-only: the service role
# reaches it through bulwark_audit_partitions_ahead.
_PARTITION_FOR = """
CREATE FUNCTION bulwark_audit_partition(month_start date) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    name text := format('audit_events_y%sm%s', to_char(month_start, 'YYYY'), to_char(month_start, 'MM'));
BEGIN
    IF month_start <> date_trunc('month', month_start)::date THEN
        RAISE EXCEPTION 'a partition starts on the first day of a month, not %', month_start;
    END IF;
    IF to_regclass(format('public.%I', name)) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format(
        'CREATE TABLE public.%I PARTITION OF public.audit_events FOR VALUES FROM (%L) TO (%L)',
        name, month_start::text || ' 00:00:00+00',
        (month_start + interval '1 month')::date::text || ' 00:00:00+00'
    );
    EXECUTE format(
        'CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON public.%I '
        'FOR EACH STATEMENT EXECUTE FUNCTION public.audit_events_append_only()', name
    );
    RETURN true;
EXCEPTION WHEN duplicate_table OR duplicate_object THEN
    RETURN false;  -- another process created it meanwhile
END
$$
"""

_PARTITIONS_AHEAD = """
CREATE FUNCTION bulwark_audit_partitions_ahead(months integer) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    this_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
    created integer := 0;
BEGIN
    IF months IS NULL OR months < 0 OR months > 36 THEN
        RAISE EXCEPTION 'months ahead must be between 0 and 36, not %', months;
    END IF;
    FOR m IN 0..months LOOP
        IF public.bulwark_audit_partition((this_month + make_interval(months => m))::date) THEN
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END
$$
"""


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _link_tables() -> None:
    op.create_table(
        "audit_chain_links",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False
        ),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_links")),
    )
    op.create_table(
        "audit_archives",
        sa.Column("partition_name", sa.String(length=63), nullable=False),
        sa.Column("first_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("last_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("entries", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.Column("detached_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("partition_name", name=op.f("pk_audit_archives")),
    )


def _guard(table: str, *, truncate: bool = True) -> None:
    """The database refuses UPDATE and DELETE (and TRUNCATE on PostgreSQL) on `table`."""
    if _postgres():
        op.execute(
            f"CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
        )
        if truncate:
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()"
            )
        return
    for operation in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {operation} refused'); END"
        )


def _unguard_sqlite(table: str) -> None:
    op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
    op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")


def upgrade() -> None:
    _link_tables()
    for table in _PROTECTED:
        _guard(table)
    # The existing chain, as it is: same ids, same hashes.
    op.execute(
        "INSERT INTO audit_chain_links (id, prev_hash, hash) SELECT id, prev_hash, hash FROM audit_events"
    )
    if _postgres():
        _partition_the_entries()
    else:
        _rebuild_sqlite_entries(with_hashes=False)


def _partition_the_entries() -> None:
    op.execute("ALTER TABLE audit_events RENAME TO audit_events_before_0014")
    op.execute("ALTER INDEX ix_audit_events_org_id_id RENAME TO ix_audit_events_before_0014_org_id_id")
    op.execute(
        "ALTER TABLE audit_events_before_0014 "
        "RENAME CONSTRAINT pk_audit_events TO pk_audit_events_before_0014"
    )
    op.execute("CREATE SEQUENCE audit_events_id_seq AS bigint CACHE 1")
    op.execute(_PARTITIONED_EVENTS)
    op.execute("ALTER SEQUENCE audit_events_id_seq OWNED BY audit_events.id")
    op.execute("CREATE INDEX ix_audit_events_org_id_id ON audit_events (org_id, id)")
    _guard("audit_events")
    op.execute(_PARTITION_FOR)
    op.execute(_PARTITIONS_AHEAD)
    op.execute("REVOKE ALL ON FUNCTION bulwark_audit_partition(date) FROM PUBLIC")
    op.execute("REVOKE ALL ON FUNCTION bulwark_audit_partitions_ahead(integer) FROM PUBLIC")
    # A partition for every month the existing entries fall in, and the months ahead.
    op.execute(
        "SELECT bulwark_audit_partition(month::date) FROM generate_series("
        "date_trunc('month', (SELECT min(occurred_at) FROM audit_events_before_0014) AT TIME ZONE 'UTC'), "
        "date_trunc('month', (SELECT max(occurred_at) FROM audit_events_before_0014) AT TIME ZONE 'UTC'), "
        "interval '1 month') AS month"
    )
    op.execute(f"SELECT bulwark_audit_partitions_ahead({MONTHS_AHEAD})")
    op.execute(
        f"INSERT INTO audit_events ({_EVENT_COLUMNS}) SELECT {_EVENT_COLUMNS} FROM audit_events_before_0014"
    )
    op.execute(
        "SELECT setval('audit_events_id_seq', coalesce(max(id), 1), max(id) IS NOT NULL) "
        "FROM audit_events_before_0014"
    )
    op.execute("DROP TABLE audit_events_before_0014")  # its triggers refuse rows' changes, not this


def _rebuild_sqlite_entries(*, with_hashes: bool) -> None:
    hashes = [sa.Column("prev_hash", sa.String(length=64), nullable=False)] if with_hashes else []
    hashes += [sa.Column("hash", sa.String(length=64), nullable=False)] if with_hashes else []
    key = ["id"] if with_hashes else ["id", "occurred_at"]
    op.create_table(
        "audit_events_rebuilt",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False
        ),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_user_id", sa.Uuid(), nullable=True),
        sa.Column("actor_kind", sa.String(length=20), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("target_type", sa.String(length=60), nullable=True),
        sa.Column("target_id", sa.String(length=200), nullable=True),
        sa.Column("source_ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        *hashes,
        sa.PrimaryKeyConstraint(*key, name="pk_audit_events"),
    )
    if with_hashes:
        op.execute(
            f"INSERT INTO audit_events_rebuilt ({_EVENT_COLUMNS}, prev_hash, hash) "
            f"SELECT {', '.join('e.' + c.strip() for c in _EVENT_COLUMNS.split(','))}, l.prev_hash, l.hash "
            "FROM audit_events e JOIN audit_chain_links l ON l.id = e.id"
        )
    else:
        op.execute(
            f"INSERT INTO audit_events_rebuilt ({_EVENT_COLUMNS}) SELECT {_EVENT_COLUMNS} FROM audit_events"
        )
    _unguard_sqlite("audit_events")
    op.execute("DROP INDEX IF EXISTS ix_audit_events_org_id_id")
    op.execute("DROP TABLE audit_events")
    op.execute("ALTER TABLE audit_events_rebuilt RENAME TO audit_events")
    op.execute("CREATE INDEX ix_audit_events_org_id_id ON audit_events (org_id, id)")
    _guard("audit_events")


def downgrade() -> None:
    unsealed = op.get_bind().execute(
        sa.text(
            "SELECT count(*) FROM audit_events e "
            "WHERE NOT EXISTS (SELECT 1 FROM audit_chain_links l WHERE l.id = e.id)"
        )
    )
    if unsealed.scalar_one():
        raise RuntimeError("the audit log has unsealed entries: run `bulwark jobs run` before downgrading")
    if _postgres():
        _unpartition_the_entries()
    else:
        _rebuild_sqlite_entries(with_hashes=True)
        for table in _PROTECTED:
            _unguard_sqlite(table)
    op.drop_table("audit_archives")
    op.drop_table("audit_chain_links")


def _unpartition_the_entries() -> None:
    for table in _PROTECTED:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    op.execute("ALTER TABLE audit_events RENAME TO audit_events_after_0014")
    op.execute("ALTER INDEX ix_audit_events_org_id_id RENAME TO ix_audit_events_after_0014_org_id_id")
    op.execute(
        "ALTER TABLE audit_events_after_0014 RENAME CONSTRAINT pk_audit_events TO pk_audit_events_after_0014"
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_user_id", sa.Uuid(), nullable=True),
        sa.Column("actor_kind", sa.String(length=20), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("target_type", sa.String(length=60), nullable=True),
        sa.Column("target_id", sa.String(length=200), nullable=True),
        sa.Column("source_ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
    )
    op.execute("CREATE INDEX ix_audit_events_org_id_id ON audit_events (org_id, id)")
    columns = ", ".join("e." + c.strip() for c in _EVENT_COLUMNS.split(","))
    op.execute(
        f"INSERT INTO audit_events ({_EVENT_COLUMNS}, prev_hash, hash) SELECT {columns}, l.prev_hash, l.hash "
        "FROM audit_events_after_0014 e JOIN audit_chain_links l ON l.id = e.id"
    )
    _guard("audit_events")
    op.execute("DROP TABLE audit_events_after_0014")  # with its partitions and the sequence it owns
    op.execute("DROP FUNCTION IF EXISTS bulwark_audit_partitions_ahead(integer)")
    op.execute("DROP FUNCTION IF EXISTS bulwark_audit_partition(date)")
