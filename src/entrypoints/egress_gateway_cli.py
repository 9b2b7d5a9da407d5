"""`bulwark egress squid-helper | render-squid | verify-keys`: the egress host's commands. The
helper is a second entrypoint on the same core (Squid starts it); the others print files."""

import asyncio
import shutil
import sys
from pathlib import Path

import click

from entrypoints.settings import SettingsError, load_settings


@click.command("squid-helper")
def squid_helper() -> None:
    """Squid's basic-auth helper (stdin/stdout, concurrency channel-IDs): admits an egress
    credential while the ledger binds its address to its user, with the address as a note."""
    from entrypoints.composition import build_egress_helper
    from entrypoints.egress_helper import serve
    from entrypoints.logging_setup import configure_logging

    try:
        settings = load_settings(egress_host=True)
    except SettingsError as error:
        # Squid shows a helper's stderr in cache.log; an unusable helper must not look alive.
        click.echo(f"bulwark egress squid-helper: error: {error}", err=True)
        sys.exit(2)
    configure_logging(settings.log_level, settings.effective_log_json)

    async def run() -> None:
        container = build_egress_helper(settings)
        try:
            await serve(container.admit)
        finally:
            await container.stop()

    asyncio.run(run())


def _default_helper_command() -> str:
    found = shutil.which("bulwark") or str(Path(sys.executable).with_name("bulwark"))
    return f"{found} egress squid-helper"


@click.command("render-squid")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default: stdout).")
@click.option("--helper-command", default=None, help="How Squid starts the helper (default: this bulwark).")
@click.option("--pid-file", default=None)
@click.option("--cache-log", default=None)
@click.option("--access-log", default=None, help="e.g. stdio:/var/log/squid/access.log")
@click.option("--coredump-dir", default=None)
def render_squid(
    out: Path | None,
    helper_command: str | None,
    pid_file: str | None,
    cache_log: str | None,
    access_log: str | None,
    coredump_dir: str | None,
) -> None:
    """squid.conf for the egress gateway: one tcp_outgoing_address per pool address (selected by
    the helper's note), CONNECT only to BULWARK_EGRESS_BROKER_TARGETS, everything else denied.
    The pool: BULWARK_EGRESS_POOL, or with a growing provider the ledger's addresses."""
    from adapters.egress.squid_config import SquidLayout, render_squid_conf
    from entrypoints.composition import egress_ledger_addresses, egress_squid_config

    try:
        settings = load_settings(egress_host=True)
        defaults = SquidLayout()
        layout = SquidLayout(
            pid_file=pid_file or defaults.pid_file,
            cache_log=cache_log or defaults.cache_log,
            access_log=access_log or defaults.access_log,
            coredump_dir=coredump_dir or defaults.coredump_dir,
        )
        # A growing provider's pool is what the ledger holds (render again on a timer).
        addresses = (
            None if settings.egress_provider == "static" else asyncio.run(egress_ledger_addresses(settings))
        )
        text = render_squid_conf(
            egress_squid_config(settings, helper_command or _default_helper_command(), layout, addresses)
        )
    except (SettingsError, ValueError) as error:
        click.echo(f"bulwark: error: {error}", err=True)
        sys.exit(2)
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
        click.echo(f"wrote {out}", err=True)


@click.command("verify-keys")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default: stdout).")
def verify_keys(out: Path | None) -> None:
    """The public halves of the vault's signing keys, for the egress host's
    BULWARK_EGRESS_VERIFY_KEYS_FILE. Run where the vault key file is; run again after a rotation."""
    from adapters.keys.egress_verify_keys import dump_verify_keys, public_halves
    from adapters.keys.keyring import KeyringError
    from entrypoints.composition import VaultKeysRefused, load_vault_keys_for

    try:
        text = dump_verify_keys(public_halves(load_vault_keys_for(load_settings()).signing_keys))
    except (SettingsError, KeyringError, VaultKeysRefused) as error:
        click.echo(f"bulwark: error: {error}", err=True)
        sys.exit(2)
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
        click.echo(f"wrote {out}", err=True)
