"""`bulwark` command line: serve, db, keys, audit, config."""

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from entrypoints.settings import Settings, SettingsError, load_settings, settings_table

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

    from granian import Granian
    from granian.constants import Interfaces

    Granian(
        target="entrypoints.asgi:create",
        factory=True,
        interface=Interfaces.ASGI,
        address=settings.host,
        port=settings.port,
        workers=settings.effective_workers,
        log_enabled=True,
        log_access=False,
        backlog=2048,
    ).serve()


def prepare_to_serve(settings: Settings) -> None:
    from adapters.storage import migrations
    from entrypoints.composition import load_keys

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        keyring = load_keys(settings)
    except (ValueError, OSError) as error:
        raise StartupError(str(error)) from error
    development = [
        reason
        for reason, applies in (
            ("SQLite database in " + str(settings.data_dir), settings.embedded_database),
            ("in-process rate limiter and revocation store (one worker)", not settings.redis_url),
            ("generated development keys", settings.keys_file is None or keyring.generated),
            ("mail printed to the log and kept in the dev outbox", not settings.smtp_host),
        )
        if applies
    ]
    if settings.is_production and keyring.generated:
        raise StartupError("production refuses generated development keys in BULWARK_KEYS_FILE")
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
    from adapters.storage.database import create_engine
    from adapters.storage.service_role import ServiceRoleError, grant_service_role

    settings = _settings()

    async def run() -> bool:
        engine = create_engine(settings.effective_database_url)
        try:
            return await grant_service_role(engine, role)
        finally:
            await engine.dispose()

    try:
        created = asyncio.run(run())
    except ServiceRoleError as error:
        raise StartupError(str(error)) from error
    click.echo(f"role {role} {'created and ' if created else ''}granted the service's privileges")


@main.group()
def audit() -> None:
    """The append-only audit log."""


@audit.command("verify")
@one_line_errors
def audit_verify() -> None:
    """Walk the hash chain and report the first broken link."""
    from adapters.storage.audit_log import verify_chain
    from adapters.storage.database import create_engine

    settings = _settings()

    async def run() -> Any:
        engine = create_engine(settings.effective_database_url)
        try:
            return await verify_chain(engine)
        finally:
            await engine.dispose()

    result = asyncio.run(run())
    if result.ok:
        click.echo(f"audit chain intact: {result.records_checked} entries verified")
        return
    click.echo(
        f"audit chain BROKEN at entry {result.first_broken_id} "
        f"({result.records_checked} entries checked): {result.reason}",
        err=True,
    )
    sys.exit(1)


@main.group()
def keys() -> None:
    """The keyring (master keys, peppers, signing keys) and data-key rotation."""


@keys.command("init")
@click.argument("path", type=click.Path(dir_okay=False, writable=True))
@one_line_errors
def keys_init(path: str) -> None:
    """Write a new production keyring to PATH (mode 0600); refuses to overwrite."""
    from pathlib import Path

    from adapters.keys.keyring import generate_keyring, save_keyring

    if Path(path).exists():
        raise StartupError(f"{path} exists; refusing to overwrite a keyring")
    save_keyring(generate_keyring(generated=False), path)
    click.echo(f"keyring written to {path}; point BULWARK_KEYS_FILE at it")


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


@main.command("config")
def config() -> None:
    """Print every setting with its default (the README's configuration table)."""
    click.echo(settings_table())


if __name__ == "__main__":
    main()
