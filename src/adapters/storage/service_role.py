"""The PostgreSQL role the service runs as: no superuser, no BYPASSRLS, owner of nothing.

Row-level security does not apply to a table's owner or to a superuser, so the role that migrates
(owns the tables) must not be the role that serves. This grants a serving role exactly the data
privileges it needs, on today's tables and on those later migrations create."""

import re

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# Lower-case, unquoted-identifier shape: nothing that needs (or could break out of) quoting.
_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# duplicate_object, unique_violation: another process created the role first.
_ALREADY_THERE = {"42710", "23505"}

_GRANTS = (
    'GRANT USAGE ON SCHEMA public TO "{role}"',
    'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"',
    'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"',
    # Tables and sequences the owner creates later (new migrations) come granted.
    'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{role}"',
    'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO "{role}"',
    # The audit log is append-only: its triggers refuse changes, and the role may not even try.
    'REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM "{role}"',
    # So is its chain (the sealer only inserts links; it moves audit_chain_head, which it may).
    "DO $$ BEGIN IF to_regclass('audit_chain_links') IS NOT NULL THEN "
    'REVOKE UPDATE, DELETE, TRUNCATE ON audit_chain_links, audit_archives FROM "{role}"; END IF; END $$',
    # The audit log's monthly partitions, created ahead by the service's job (see migration 0014).
    "DO $$ BEGIN IF to_regprocedure('bulwark_audit_partitions_ahead(integer)') IS NOT NULL THEN "
    'GRANT EXECUTE ON FUNCTION bulwark_audit_partitions_ahead(integer) TO "{role}"; END IF; END $$',
    # The vault's directory of sealed rows across orgs (ids and orgs only; see migration 0005).
    "DO $$ BEGIN IF to_regprocedure('bulwark_sealed_directory()') IS NOT NULL THEN "
    "GRANT EXECUTE ON FUNCTION bulwark_sealed_directory(), bulwark_sealed_org(text, uuid) "
    'TO "{role}"; END IF; END $$',
    # A bridge request's org, by the bridge's id (ids only; see migration 0006).
    "DO $$ BEGIN IF to_regprocedure('bulwark_bridge_org(uuid)') IS NOT NULL THEN "
    'GRANT EXECUTE ON FUNCTION bulwark_bridge_org(uuid) TO "{role}"; END IF; END $$',
    # Bridges' last-seen marks in batches across orgs (last-seen columns only; see migration 0007).
    "DO $$ BEGIN IF to_regprocedure('bulwark_bridges_seen(uuid[], uuid[], timestamptz[], text[], text[])') "
    "IS NOT NULL THEN GRANT EXECUTE ON FUNCTION "
    'bulwark_bridges_seen(uuid[], uuid[], timestamptz[], text[], text[]) TO "{role}"; END IF; END $$',
    # A closed account's invitations in every org, by address (see the account closure migration).
    "DO $$ BEGIN IF to_regprocedure('bulwark_forget_invitations_to(text)') IS NOT NULL THEN "
    'GRANT EXECUTE ON FUNCTION bulwark_forget_invitations_to(text) TO "{role}"; END IF; END $$',
)


class ServiceRoleError(ValueError):
    """The role cannot be the service's role (bad name, wrong database, or it bypasses RLS)."""


async def grant_service_role(engine: AsyncEngine, role: str) -> bool:
    """Creates `role` (LOGIN, NOSUPERUSER, NOBYPASSRLS) unless it exists, and grants it the data
    privileges on schema public. Runs as the tables' owner. True when the role was created.
    A role that exists with SUPERUSER or BYPASSRLS is refused, not silently used."""
    return await _grant(engine, role, _GRANTS)


# The egress host's helper and render-squid read whose address is live, and nothing else: the
# internet-facing proxy host must not be able to rewrite the ledger or read anybody's data.
_EGRESS_HELPER_GRANTS = (
    'GRANT USAGE ON SCHEMA public TO "{role}"',
    'GRANT SELECT (address, user_id, state) ON egress_addresses TO "{role}"',
    'GRANT SELECT (id, status) ON users TO "{role}"',
)


async def grant_egress_helper_role(engine: AsyncEngine, role: str) -> bool:
    """Creates `role` (LOGIN, NOSUPERUSER, NOBYPASSRLS) unless it exists, and grants it only the
    reads of the egress host: which address each user holds, and whether their account is
    active. True when the role was created."""
    return await _grant(engine, role, _EGRESS_HELPER_GRANTS)


async def _grant(engine: AsyncEngine, role: str, grants: tuple[str, ...]) -> bool:
    if not _ROLE_NAME.fullmatch(role):
        raise ServiceRoleError(f"{role!r} is not a plain role name ([a-z_][a-z0-9_]*, at most 63)")
    if engine.dialect.name != "postgresql":
        raise ServiceRoleError("only PostgreSQL has roles (and row-level security)")
    created = False
    async with engine.begin() as conn:
        if await _is_privileged(conn, role) is None:
            try:
                async with conn.begin_nested():
                    await conn.execute(text(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS'))
                created = True
            except DBAPIError as error:
                if getattr(error.orig, "sqlstate", None) not in _ALREADY_THERE:
                    raise
        if await _is_privileged(conn, role):
            raise ServiceRoleError(f"role {role} is a superuser or bypasses row-level security")
        for statement in grants:
            await conn.execute(text(statement.format(role=role)))
    return created


async def _is_privileged(conn: AsyncConnection, role: str) -> bool | None:
    """None when the role does not exist."""
    row = (
        await conn.execute(
            text("SELECT rolsuper OR rolbypassrls AS privileged FROM pg_roles WHERE rolname = :role"),
            {"role": role},
        )
    ).first()
    return None if row is None else bool(row.privileged)
