"""`bulwark` command line: serve, db, keys, audit, admin, config."""

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import click

from entrypoints.egress_gateway_cli import render_squid, squid_helper, verify_keys
from entrypoints.settings import Settings, SettingsError, load_settings, settings_table

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("bulwark")
F = TypeVar("F", bound=Callable[..., Any])


class StartupError(Exception):
    """A problem the operator must fix; reported as one line, never a traceback."""


def one_line_errors(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (SettingsError, StartupError) as error:
            click.echo(f"bulwark: error: {error}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def _settings() -> Settings:
    return load_settings()


@click.group()
def main() -> None:
    """Bulwark: the security core of the trading platform."""


@main.command()
@click.option("--host", help="Address to listen on (BULWARK_HOST).")
@click.option("--port", type=int, help="Port to listen on (BULWARK_PORT).")
@click.option("--workers", type=int, help="Worker processes (BULWARK_WORKERS).")
@one_line_errors
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the service with granian."""
    # Flags go through the environment so every worker process sees the same settings.
    for name, value in (("HOST", host), ("PORT", port), ("WORKERS", workers)):
        if value is not None:
            os.environ[f"BULWARK_{name}"] = str(value)
    settings = _settings()
    from entrypoints.logging_setup import configure_logging

    configure_logging(settings.log_level, settings.effective_log_json)
    prepare_to_serve(settings)
    if settings.in_process_vault:
        serve_with_vault(settings)
        return

    run_granian("entrypoints.asgi:create", settings.host, settings.port, settings.effective_workers)


def run_granian(target: str, host: str, port: int, workers: int) -> None:
    """Serve an ASGI factory with granian's worker processes (each builds its own container).

    A worker that dies (OOM killer, SIGKILL, a crash in native code) is replaced; without
    `respawn_failed_workers` granian stops every other worker too and the whole service is gone.
    Granian still exits if a worker keeps dying within seconds of its respawn (a crash loop)."""
    from granian import Granian
    from granian.constants import Interfaces

    Granian(
        target=target,
        factory=True,
        interface=Interfaces.ASGI,
        address=host,
        port=port,
        workers=workers,
        log_enabled=True,
        log_access=False,
        backlog=2048,
        respawn_failed_workers=True,
    ).serve()


def serve_with_vault(settings: Settings) -> None:
    """Development: one process serves the public API and, on its own listener, the credential
    vault (granian's embedded server), so one command still starts everything."""
    from granian.constants import Interfaces
    from granian.server.embed import Server

    from entrypoints.app import create_asgi
    from entrypoints.composition import build_container, build_vault_container
    from entrypoints.vault_app import create_vault_asgi

    async def run() -> None:
        servers = [
            Server(
                create_asgi(build_container(settings)),
                address=settings.host,
                port=settings.port,
                interface=Interfaces.ASGI,
            ),
            Server(
                create_vault_asgi(build_vault_container(settings)),
                address=settings.vault_host,
                port=settings.vault_port,
                interface=Interfaces.ASGI,
            ),
        ]
        log.info("credential vault in-process on http://%s:%d", settings.vault_host, settings.vault_port)
        tasks = [asyncio.create_task(server.serve()) for server in servers]
        try:
            await asyncio.gather(*tasks)
        finally:
            for server in servers:
                server.stop()  # type: ignore[no-untyped-call]
            await asyncio.wait(tasks, timeout=5)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


def prepare_to_serve(settings: Settings) -> None:
    from adapters.storage import migrations
    from entrypoints.composition import load_keys, load_vault_keys_for

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.is_production and settings.vault_keys_file is not None:
        raise StartupError(
            "production refuses BULWARK_VAULT_KEYS_FILE for `serve`: the public API must never hold "
            "the vault's opening keys; run the vault apart with `bulwark vault serve`"
        )
    try:
        keyring = load_keys(settings)
        if settings.in_process_vault:
            load_vault_keys_for(settings)
    except (ValueError, OSError) as error:
        raise StartupError(str(error)) from error
    development = [
        reason
        for reason, applies in (
            ("SQLite database in " + str(settings.data_dir), settings.embedded_database),
            ("in-process rate limiter and revocation store (one worker)", not settings.redis_url),
            ("generated development keys", settings.keys_file is None or keyring.generated),
            ("credential vault in-process with generated keys", settings.in_process_vault),
            ("mail printed to the log and kept in the dev outbox", not settings.smtp_host),
        )
        if applies
    ]
    if settings.is_production and keyring.generated:
        raise StartupError("production refuses generated development keys in BULWARK_KEYS_FILE")
    if settings.is_production and settings.ctrader_client_id:
        if keyring.active_broker_sealing_key is None:
            raise StartupError(
                "production needs the vault's public sealing key in BULWARK_KEYS_FILE for cTrader "
                "(`bulwark keys import-sealing-key`)"
            )
        if not keyring.provider_secrets.get("ctrader_client_secret"):
            raise StartupError(
                "production needs ctrader_client_secret in the keyring (`bulwark keys set-secret`)"
            )
    if settings.egress_provider == "hetzner" and not keyring.provider_secrets.get("hetzner_api_token"):
        # Without it every allocation would fail later, one job run at a time; say so now.
        raise StartupError(
            "BULWARK_EGRESS_PROVIDER=hetzner needs hetzner_api_token in the keyring "
            "(`bulwark keys set-secret hetzner_api_token`)"
        )
    if settings.is_production:
        for provider in settings.sso_providers_on:
            if not keyring.provider_secrets.get(f"sso_{provider}_client_secret"):
                raise StartupError(
                    f"production needs sso_{provider}_client_secret in the keyring "
                    f"(`bulwark keys set-secret sso_{provider}_client_secret`)"
                )
    if development:
        log.warning("DEVELOPMENT MODE -- not for production: %s", "; ".join(development))
    if settings.embedded_database:
        migrations.upgrade(settings.effective_database_url)
    log.info(
        "serving on http://%s:%d with %d worker(s)",
        settings.host,
        settings.port,
        settings.effective_workers,
    )


@main.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@one_line_errors
def db_upgrade(revision: str) -> None:
    """Apply Alembic migrations."""
    from adapters.storage import migrations

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrations.upgrade(settings.effective_database_url, revision)
    click.echo(f"database upgraded to {revision}")


@db.command("grant-service-role")
@click.argument("role")
@one_line_errors
def db_grant_service_role(role: str) -> None:
    """Create ROLE (no superuser, no BYPASSRLS) and grant it the service's data privileges.

    Run it as the tables' owner (BULWARK_DATABASE_URL), after `db upgrade`; then serve with
    BULWARK_DATABASE_URL naming ROLE, so that row-level security applies to the service. Set
    the role's password (or other authentication) yourself."""
    from adapters.storage.service_role import grant_service_role

    _grant_role(role, grant_service_role, "the service's privileges")


@db.command("grant-egress-helper-role")
@click.argument("role")
@one_line_errors
def db_grant_egress_helper_role(role: str) -> None:
    """Create ROLE and grant it only what the egress host reads (whose address is live, and
    whether the account is active): the Squid helper's and render-squid's BULWARK_DATABASE_URL.
    Run it as the tables' owner after `db upgrade`; set the role's password yourself."""
    from adapters.storage.service_role import grant_egress_helper_role

    _grant_role(role, grant_egress_helper_role, "the egress host's reads")


def _grant_role(role: str, grant: "Callable[[AsyncEngine, str], Awaitable[bool]]", what: str) -> None:
    from adapters.storage.database import create_engine
    from adapters.storage.service_role import ServiceRoleError

    settings = _settings()

    async def run() -> bool:
        engine = create_engine(settings.effective_database_url)
        try:
            return await grant(engine, role)
        finally:
            await engine.dispose()

    try:
        created = asyncio.run(run())
    except ServiceRoleError as error:
        raise StartupError(str(error)) from error
    click.echo(f"role {role} {'created and ' if created else ''}granted {what}")


@main.group()
def audit() -> None:
    """The append-only audit log."""


@audit.command("verify")
@click.option("--no-seal", is_flag=True, help="Check only what is sealed already; seal nothing first.")
@one_line_errors
def audit_verify(no_seal: bool) -> None:
    """Seal what has committed, walk the hash chain and report the first broken link."""
    from adapters.storage.audit_sealer import SqlAuditSealer
    from adapters.storage.audit_verification import verify_chain
    from adapters.storage.database import create_engine

    settings = _settings()

    async def run() -> Any:
        engine = create_engine(settings.effective_database_url)
        try:
            if not no_seal:
                await SqlAuditSealer(engine, wait_seconds=2.0).seal()
            return await verify_chain(engine)
        finally:
            await engine.dispose()

    result = asyncio.run(run())
    start = f" from the checkpoint after entry {result.started_after}" if result.started_after else ""
    archived = f", {result.archived} archived entries passed over by their links" if result.archived else ""
    unsealed = f"; {result.unsealed} newer entries not sealed yet" if result.unsealed else ""
    if result.ok:
        click.echo(
            f"audit chain intact{start}: {result.records_checked} entries verified{archived}{unsealed}"
        )
        return
    click.echo(
        f"audit chain BROKEN at entry {result.first_broken_id} "
        f"({result.records_checked} entries checked{start}): {result.reason}",
        err=True,
    )
    sys.exit(1)


@audit.command("archive")
@click.option(
    "--before",
    "before",
    required=True,
    help="First day of a month (YYYY-MM-01): detach every month before it.",
)
@one_line_errors
def audit_archive(before: str) -> None:
    """PostgreSQL, as the tables' owner: detach whole, sealed months of the audit log for archiving.

    Each detached partition stays in the database as a table of its own (dump it, then drop it);
    `bulwark audit verify` keeps verifying what stays, from the first retained entry."""
    from datetime import date

    from adapters.storage.audit_partitions import ArchiveRefused, SqlAuditPartitions
    from adapters.storage.database import create_engine

    try:
        cutoff = date.fromisoformat(before)
    except ValueError as error:
        raise StartupError(f"--before {before!r} is not a date (YYYY-MM-01)") from error
    if cutoff.day != 1:
        raise StartupError("--before must be the first day of a month")
    settings = _settings()

    async def run() -> Any:
        engine = create_engine(settings.effective_database_url)
        try:
            return await SqlAuditPartitions(engine).archive_before(cutoff)
        finally:
            await engine.dispose()

    try:
        archived = asyncio.run(run())
    except ArchiveRefused as error:
        raise StartupError(str(error)) from error
    for part in archived:
        click.echo(f"detached {part.name}: {part.entries} entries, ids {part.first_id}-{part.last_id}")
    if not archived:
        click.echo("nothing to detach")


@main.group()
def keys() -> None:
    """The keyring (master keys, peppers, signing keys) and data-key rotation."""


@keys.command("init")
@click.argument("path", type=click.Path(dir_okay=False, writable=True))
@click.option("--vault", is_flag=True, help="Write the credential vault's key file instead.")
@one_line_errors
def keys_init(path: str, vault: bool) -> None:
    """Write a new production keyring (or, with --vault, vault key file) to PATH (mode 0600);
    refuses to overwrite. --vault prints the public half for the public API's keyring."""
    from pathlib import Path

    from adapters.keys.keyring import generate_keyring, save_keyring
    from adapters.keys.vault_keys import generate_vault_keys, save_vault_keys

    if Path(path).exists():
        raise StartupError(f"{path} exists; refusing to overwrite a key file")
    if not vault:
        save_keyring(generate_keyring(generated=False), path)
        click.echo(f"keyring written to {path}; point BULWARK_KEYS_FILE at it")
        return
    keys_file = generate_vault_keys(generated=False)
    save_vault_keys(keys_file, Path(path))
    _print_sealing_key(
        keys_file.active_opening_key_id, keys_file.public_halves()[keys_file.active_opening_key_id]
    )
    click.echo(
        f"vault key file written to {path}; point the vault's BULWARK_VAULT_KEYS_FILE at it and add "
        "the public half above to the public API's keyring with `bulwark keys import-sealing-key`",
        err=True,
    )


def _print_sealing_key(key_id: str, public: bytes) -> None:
    import base64
    import json

    click.echo(json.dumps({"sealing_key_id": key_id, "public_key": base64.b64encode(public).decode()}))


@keys.command("import-sealing-key")
@click.option("--id", "key_id", required=True, help="sealing_key_id printed by the vault.")
@click.option("--public-key", required=True, help="public_key printed by the vault (base64).")
@one_line_errors
def keys_import_sealing_key(key_id: str, public_key: str) -> None:
    """Add the vault's public sealing key to BULWARK_KEYS_FILE and make it the active one."""
    import base64
    import binascii
    from dataclasses import replace

    from adapters.keys.keyring import KeyringError, save_keyring
    from entrypoints.composition import load_keys

    settings = _settings()
    if settings.keys_file is None:
        raise StartupError("set BULWARK_KEYS_FILE to the keyring to change")
    try:
        raw = base64.b64decode(public_key, validate=True)
        keyring = load_keys(settings)
        updated = replace(
            keyring,
            broker_sealing_keys={**keyring.broker_sealing_keys, key_id: raw},
            active_broker_sealing_key=key_id,
        )
    except (binascii.Error, ValueError, KeyringError) as error:
        raise StartupError(f"not a sealing key: {error}") from error
    save_keyring(updated, settings.keys_file)
    click.echo(f"sealing key {key_id} is now active; restart the public API's workers")


@keys.command("set-secret")
@click.argument(
    "name",
    type=click.Choice(
        [
            "ctrader_client_secret",
            "hetzner_api_token",
            "sso_google_client_secret",
            "sso_azure_client_secret",
            "sso_oidc_client_secret",
        ]
    ),
)
@click.option("--vault", is_flag=True, help="Store it in BULWARK_VAULT_KEYS_FILE instead.")
@one_line_errors
def keys_set_secret(name: str, vault: bool) -> None:
    """Store an outside peer's secret, read from stdin (never argv), in the keyring."""
    from dataclasses import replace

    from adapters.keys.keyring import save_keyring
    from adapters.keys.vault_keys import load_vault_keys, save_vault_keys
    from entrypoints.composition import load_keys

    value = sys.stdin.readline().strip()
    if not value:
        raise StartupError("give the secret on standard input")
    settings = _settings()
    if vault:
        if settings.vault_keys_file is None:
            raise StartupError("set BULWARK_VAULT_KEYS_FILE to the vault key file to change")
        current = load_vault_keys(settings.vault_keys_file)
        save_vault_keys(
            replace(current, provider_secrets={**current.provider_secrets, name: value}),
            settings.vault_keys_file,
        )
    else:
        if settings.keys_file is None:
            raise StartupError("set BULWARK_KEYS_FILE to the keyring to change")
        keyring = load_keys(settings)
        save_keyring(
            replace(keyring, provider_secrets={**keyring.provider_secrets, name: value}), settings.keys_file
        )
    click.echo(f"{name} stored")


@keys.command("add")
@click.argument("kind", type=click.Choice(["master", "pepper", "signing"]))
@one_line_errors
def keys_add(kind: str) -> None:
    """Add a new active key of KIND to BULWARK_KEYS_FILE; older ones keep working."""
    from adapters.keys.keyring import add_master_key, add_pepper, add_signing_key, save_keyring

    settings = _settings()
    if settings.keys_file is None:
        raise StartupError("set BULWARK_KEYS_FILE to the keyring to change")
    adders = {"master": add_master_key, "pepper": add_pepper, "signing": add_signing_key}
    from entrypoints.composition import load_keys

    save_keyring(adders[kind](load_keys(settings)), settings.keys_file)
    click.echo(
        f"new active {kind} key added; restart workers, then run `bulwark keys rotate` for master keys"
    )


@keys.command("rotate")
@one_line_errors
def keys_rotate() -> None:
    """Re-wrap every data key under the active master key and start a fresh data key.
    Old envelopes keep decrypting; run it after every worker has the new keyring."""
    from adapters.crypto.secret_box import EnvelopeSecretBox
    from adapters.keys.local_key_provider import LocalKeyProvider
    from adapters.storage.database import create_engine
    from entrypoints.composition import load_keys

    settings = _settings()

    async def run() -> Any:
        engine = create_engine(settings.effective_database_url)
        try:
            return await EnvelopeSecretBox(engine, LocalKeyProvider(load_keys(settings))).rotate()
        finally:
            await engine.dispose()

    report = asyncio.run(run())
    click.echo(
        f"data keys under master key {report.master_key_id}: {report.rewrapped} re-wrapped, "
        f"{report.already_current} already current; new active data key {report.new_data_key_id}"
    )


@main.group()
def vault() -> None:
    """The credential vault: the only process that can open broker credentials."""


@vault.command("serve")
@click.option("--host", help="Address to listen on (BULWARK_VAULT_HOST); keep it private.")
@click.option("--port", type=int, help="Port to listen on (BULWARK_VAULT_PORT).")
@click.option("--workers", type=int, help="Worker processes (BULWARK_WORKERS).")
@one_line_errors
def vault_serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the credential vault with granian."""
    for name, value in (("VAULT_HOST", host), ("VAULT_PORT", port), ("WORKERS", workers)):
        if value is not None:
            os.environ[f"BULWARK_{name}"] = str(value)
    settings = _settings()
    from entrypoints.composition import load_vault_keys_for
    from entrypoints.logging_setup import configure_logging

    configure_logging(settings.log_level, settings.effective_log_json)
    if settings.is_production and settings.vault_keys_file is None:
        raise StartupError("production refuses a vault without BULWARK_VAULT_KEYS_FILE")
    try:
        keys = load_vault_keys_for(settings)
    except (ValueError, OSError) as error:
        raise StartupError(str(error)) from error
    if settings.is_production and keys.generated:
        raise StartupError("production refuses generated development keys in BULWARK_VAULT_KEYS_FILE")
    if (
        settings.is_production
        and settings.ctrader_client_id
        and not keys.provider_secrets.get("ctrader_client_secret")
    ):
        # Refreshing with no secret would be refused for every connection: refuse to start instead.
        raise StartupError(
            "production needs ctrader_client_secret in the vault key file (`bulwark keys set-secret --vault`)"
        )
    if settings.embedded_database:
        from adapters.storage import migrations

        migrations.upgrade(settings.effective_database_url)
    log.info("credential vault on http://%s:%d", settings.vault_host, settings.vault_port)
    run_granian(
        "entrypoints.vault_asgi:create", settings.vault_host, settings.vault_port, settings.effective_workers
    )


def _run_in(build: Callable[[Settings], Any], work: Callable[[Any], Any]) -> Any:
    """Runs `work(container)` against the container `build` makes (migrating an embedded
    database first), and stops the container afterwards."""
    settings = _settings()
    if settings.embedded_database:
        from adapters.storage import migrations

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        migrations.upgrade(settings.effective_database_url)

    async def run() -> Any:
        try:
            container = build(settings)
        except (ValueError, OSError) as error:
            raise StartupError(str(error)) from error
        try:
            return await work(container)
        finally:
            await container.stop()

    return asyncio.run(run())


def _run_vault(work: Callable[[Any], Any]) -> Any:
    from entrypoints.composition import build_vault_container

    return _run_in(build_vault_container, work)


@vault.command("refresh-due")
@one_line_errors
def vault_refresh_due() -> None:
    """Refresh every broker token inside the refresh margin (run it from a timer)."""
    report = _run_vault(lambda c: c.refresh_due())
    click.echo(f"refreshed {report.refreshed}, needs_reauth {report.needs_reauth}, failed {report.failed}")
    if report.failed:
        sys.exit(1)


@vault.command("rotate")
@click.option("--reseal", "reseal_now", is_flag=True, help="Only re-seal under the active key (a rerun).")
@one_line_errors
def vault_rotate(reseal_now: bool) -> None:
    """Add a new active key pair to BULWARK_VAULT_KEYS_FILE and re-seal every credential under it,
    one short transaction per row, with no downtime: old private keys stay, so everything sealed
    under them still opens, and running vault workers reread the file when they meet the new key.
    Prints the new public half for the public API's keyring."""
    from adapters.keys.vault_keys import add_opening_key, load_vault_keys, save_vault_keys

    settings = _settings()
    if settings.vault_keys_file is None:
        raise StartupError("set BULWARK_VAULT_KEYS_FILE to the vault key file to rotate")
    rotated = None
    if not reseal_now:
        rotated = add_opening_key(load_vault_keys(settings.vault_keys_file))
        save_vault_keys(rotated, settings.vault_keys_file)
    report = _run_vault(lambda c: c.reseal())
    busy = (
        f", {report.busy} being refreshed (run `bulwark vault rotate --reseal` again)" if report.busy else ""
    )
    click.echo(f"re-sealed {report.resealed}, already current {report.already_current}{busy}", err=True)
    if rotated is not None:
        _print_sealing_key(
            rotated.active_opening_key_id, rotated.public_halves()[rotated.active_opening_key_id]
        )
        click.echo("import the public half above into the public API's keyring", err=True)


@main.group("service-clients")
def service_clients() -> None:
    """The internal workers the credential vault serves."""


@service_clients.command("create")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, required=True, help="broker_credentials:use, ...")
@one_line_errors
def service_clients_create(name: str, scopes: tuple[str, ...]) -> None:
    """Create a client; prints {"client_id", "client_secret"} once (only a hash is kept)."""
    import json

    from application.errors import ApplicationError

    try:
        created = _run_vault(lambda c: c.create_client(name, list(scopes)))
    except ApplicationError as error:
        raise StartupError(error.detail) from error
    click.echo(json.dumps({"client_id": str(created.client.id), "client_secret": created.secret}))


@service_clients.command("list")
@one_line_errors
def service_clients_list() -> None:
    """Every client with its scopes and state."""
    for client in _run_vault(lambda c: c.list_clients()):
        state = "disabled" if client.is_disabled else "active"
        click.echo(f"{client.id}  {client.name}  {' '.join(sorted(client.scopes))}  {state}")


@service_clients.command("disable")
@click.argument("name")
@one_line_errors
def service_clients_disable(name: str) -> None:
    """Refuse the client from its next request on."""
    from application.errors import ApplicationError

    try:
        _run_vault(lambda c: c.disable_client(name))
    except ApplicationError as error:
        raise StartupError(error.detail) from error
    click.echo(f"service client {name} disabled")


@service_clients.command("rotate-secret")
@click.argument("name")
@one_line_errors
def service_clients_rotate_secret(name: str) -> None:
    """A new secret, printed once; the old one works for BULWARK_SERVICE_CLIENT_SECRET_OVERLAP_SECONDS."""
    import json

    from application.errors import ApplicationError

    try:
        created = _run_vault(lambda c: c.rotate_client_secret(name))
    except ApplicationError as error:
        raise StartupError(error.detail) from error
    click.echo(json.dumps({"client_id": str(created.client.id), "client_secret": created.secret}))


@main.group()
def admin() -> None:
    """Platform administrators: their own password, TOTP factor and recovery codes."""


def _run_admin(work: Callable[[Any], Any]) -> Any:
    """Runs `work(container)` against the public API's container, turning application errors
    into one-line operator errors."""
    from application.errors import ApplicationError
    from entrypoints.composition import build_container

    try:
        return _run_in(build_container, work)
    except ApplicationError as error:
        raise StartupError(error.detail) from error


def _read_admin_password() -> str:
    """From a hidden prompt on a terminal, else the first line of stdin: never from argv, where
    every user of the machine could read it in the process list."""
    if sys.stdin.isatty():
        value = str(click.prompt("Admin password", hide_input=True, confirmation_prompt=True, err=True))
    else:
        value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise StartupError("give the admin password at the prompt or on standard input")
    return value


@admin.command("create")
@click.option("--email", required=True, help="The account to promote (created, verified, if none has it).")
@click.option(
    "--json", "as_json", is_flag=True, help='Print one object {"user_id", "otpauth_uri", "recovery_codes"}.'
)
@one_line_errors
def admin_create(email: str, as_json: bool) -> None:
    """Promote an account to platform administrator with its own admin password (prompt or stdin)
    and a new TOTP factor. Prints the enrolment URI and the recovery codes, once."""
    import json

    password = _read_admin_password()
    enrolment = _run_admin(lambda c: c.admin.create(email, password))
    if as_json:
        click.echo(
            json.dumps(
                {
                    "user_id": str(enrolment.user_id),
                    "otpauth_uri": enrolment.otpauth_uri,
                    "recovery_codes": enrolment.recovery_codes,
                }
            )
        )
        return
    if enrolment.created_account:
        click.echo(f"created account {email} (verified; its user password is set by the reset mail)")
    click.echo(f"platform administrator {enrolment.user_id}")
    click.echo("add this to the authenticator app (shown once):")
    click.echo(enrolment.otpauth_uri)
    click.echo("recovery codes (each works once; shown once):")
    for code in enrolment.recovery_codes:
        click.echo(f"  {code}")


@admin.command("list")
@one_line_errors
def admin_list() -> None:
    """Every platform administrator, and whether their admin login is locked."""
    for listing in _run_admin(lambda c: c.admin.list_admins()):
        locked = f"locked until {listing.locked_until.isoformat()}" if listing.locked_until else "active"
        click.echo(f"{listing.user_id}  {listing.email}  since {listing.created_at.date()}  {locked}")


@admin.command("unlock")
@click.option("--email", required=True, help="The administrator whose admin login to unlock.")
@one_line_errors
def admin_unlock(email: str) -> None:
    """Lift an admin login lock now (and forget the failures that led to it)."""
    lifted = _run_admin(lambda c: c.admin.unlock(email))
    click.echo(f"admin login of {email} unlocked" if lifted else f"admin login of {email} was not locked")


@admin.command("reset-factor")
@click.option("--email", required=True, help="The administrator who lost their TOTP factor.")
@click.option(
    "--json", "as_json", is_flag=True, help='Print one object {"user_id", "otpauth_uri", "recovery_codes"}.'
)
@one_line_errors
def admin_reset_factor(email: str, as_json: bool) -> None:
    """Recovery on the server when an administrator (the last one, say) lost their TOTP factor:
    a new factor and recovery codes, printed once; the lock lifted; their admin sessions ended.
    The admin password stays. Nothing secret is read from the command line. Audited."""
    import json

    enrolment = _run_admin(lambda c: c.admin.reset_factor(email))
    if as_json:
        click.echo(
            json.dumps(
                {
                    "user_id": str(enrolment.user_id),
                    "otpauth_uri": enrolment.otpauth_uri,
                    "recovery_codes": enrolment.recovery_codes,
                }
            )
        )
        return
    click.echo(f"new admin factor for {email} ({enrolment.user_id}); admin login unlocked")
    click.echo("add this to the authenticator app (shown once):")
    click.echo(enrolment.otpauth_uri)
    click.echo("recovery codes (each works once; shown once):")
    for code in enrolment.recovery_codes:
        click.echo(f"  {code}")


@main.group()
def jobs() -> None:
    """Background work the workers can also do on their own (BULWARK_JOBS_INTERVAL_SECONDS,
    BULWARK_HOUSEKEEPING_INTERVAL_SECONDS)."""


@jobs.command("run")
@one_line_errors
def jobs_run() -> None:
    """Once, for a timer (systemd, cron, a Kubernetes CronJob): resume every unfinished account
    closure, seal the audit log and create its monthly partitions ahead, do the housekeeping (dead
    sessions and spent one-time tokens past BULWARK_HOUSEKEEPING_RETENTION_DAYS deleted in
    batches, the rate limiter's keys checked), then run the egress job. Every step is idempotent."""

    async def work(container: Any) -> tuple[int, Any, int, Any]:
        finished = await container.closures.resume()
        sealed = await container.audit.seal()
        created = await container.audit.keep_partitions()
        return finished, sealed, created, await container.housekeeping.run()

    finished, sealed, created, housekeeping = _run_admin(work)
    click.echo(f"account closures finished: {finished}")
    click.echo(
        f"audit entries sealed: {sealed.sealed} (through entry {sealed.sealed_through}; "
        f"{sealed.unsealed} waiting for an open transaction)"
    )
    click.echo(f"audit partitions created ahead: {created}")
    click.echo(f"sessions deleted: {housekeeping.sessions_deleted}")
    click.echo(f"one-time tokens deleted: {housekeeping.tokens_deleted}")
    limiter = housekeeping.limiter
    click.echo(f"rate-limit keys checked: {limiter.checked}, repaired: {limiter.repaired} ({limiter.note})")
    report = _run_admin(lambda c: c.egress.job())
    click.echo(
        f"egress: allocated {report.allocated}, waiting {report.waiting}, graces started "
        f"{report.graces_started}, teardowns started {report.teardowns_started}, detached "
        f"{report.detached}, back in the pool {report.returned_to_pool}, released {report.released}"
    )
    for why in report.held_back:
        click.echo(f"egress: held back: {why}")


@main.group()
def egress() -> None:
    """Dedicated egress addresses."""


egress.add_command(squid_helper)
egress.add_command(render_squid)
egress.add_command(verify_keys)


@egress.command("audit")
@one_line_errors
def egress_audit() -> None:
    """Compare the ledger, the provider's list and the gateway's bindings; exit 1 on findings."""
    report = _run_admin(lambda c: c.egress.audit.run())
    click.echo(
        f"egress audit at {report.checked_at.isoformat()}: {report.ledger_size} addresses in the ledger"
    )
    sections: list[tuple[str, list[str]]] = [
        (
            "leaks (the provider bills, the ledger does not hold)",
            [f"{p.address} ({p.provider_ref})" for p in report.leaks],
        ),
        ("missing at the provider", [f"{a.address} ({a.state})" for a in report.missing]),
        (
            "stale allocations",
            [f"{s.address.address} user {s.address.user_id}: {s.why}" for s in report.stale],
        ),
        (
            "broken (allocated, not bound by the gateway)",
            [f"{a.address} user {a.user_id}" for a in report.broken],
        ),
        (
            "dangerous (bound by the gateway, unknown to the ledger)",
            [f"{b.address} user {b.user_id}" for b in report.dangerous],
        ),
        ("stuck teardowns", [f"{a.address} {a.state} since {a.since.isoformat()}" for a in report.stuck]),
        (
            "waiting for an address (pool exhausted)",
            [f"user {w.user_id} since {w.since.isoformat()}" for w in report.waiting],
        ),
        ("not checked", list(report.unchecked)),
    ]
    for title, lines in sections:
        if lines:
            click.echo(f"{title}: {len(lines)}")
            for line in lines:
                click.echo(f"  {line}")
    if report.clean:
        click.echo("clean")
    else:
        sys.exit(1)


@main.command("config")
def config() -> None:
    """Print every setting with its default (the README's configuration table)."""
    click.echo(settings_table())


if __name__ == "__main__":
    main()
