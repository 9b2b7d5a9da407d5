"""`bulwark admin` as an operator runs it (embedded backend): the admin password from stdin, never
argv; the enrolment printed once; list, unlock and the reset-factor recovery path."""

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from adapters.storage.database import create_engine
from adapters.storage.tables import audit_events, platform_admins
from application.errors import ApplicationError
from application.identity import RequestContext
from entrypoints.cli import main
from entrypoints.composition import build_container
from entrypoints.settings import load_settings

ADMIN_PASSWORD = "an entirely separate admin passphrase 9"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in [k for k in os.environ if k.startswith("BULWARK_")]:
        monkeypatch.delenv(name)
    return {"BULWARK_DATA_DIR": str(tmp_path / "data"), "BULWARK_ARGON2_MEMORY_KIB": "19456"}


def test_admin_create_list_and_unlock(env: dict[str, str]) -> None:
    runner = CliRunner()
    created = runner.invoke(
        main,
        ["admin", "create", "--email", "Root@Example.com", "--json"],
        input=ADMIN_PASSWORD + "\n",
        env=env,
    )
    assert created.exit_code == 0, created.output
    enrolment = json.loads(created.stdout)
    assert set(enrolment) == {"user_id", "otpauth_uri", "recovery_codes"}
    assert enrolment["otpauth_uri"].startswith("otpauth://totp/") and len(enrolment["recovery_codes"]) == 10
    assert ADMIN_PASSWORD not in created.output

    again = runner.invoke(
        main, ["admin", "create", "--email", "root@example.com"], input=ADMIN_PASSWORD + "\n", env=env
    )
    assert again.exit_code == 2 and "already" in again.output

    weak = runner.invoke(main, ["admin", "create", "--email", "other@example.com"], input="short\n", env=env)
    assert weak.exit_code == 2 and "password" in weak.output

    listed = runner.invoke(main, ["admin", "list"], env=env)
    assert listed.exit_code == 0 and "root@example.com" in listed.output and "active" in listed.output

    unlocked = runner.invoke(main, ["admin", "unlock", "--email", "root@example.com"], env=env)
    assert unlocked.exit_code == 0 and "was not locked" in unlocked.output
    unknown = runner.invoke(main, ["admin", "unlock", "--email", "nobody@example.com"], env=env)
    assert unknown.exit_code == 2


def test_admin_create_wants_the_password_off_the_command_line(env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["admin", "create", "--email", "root@example.com"], input="", env=env)
    assert result.exit_code == 2 and "standard input" in result.output
    assert "--password" not in CliRunner().invoke(main, ["admin", "create", "--help"]).output


def test_reset_factor_reissues_the_factor_and_codes_unlocks_and_is_audited(env: dict[str, str]) -> None:
    """The recovery path when the last administrator lost their factor: on the server only."""
    runner = CliRunner()
    created = runner.invoke(
        main,
        ["admin", "create", "--email", "root@example.com", "--json"],
        input=ADMIN_PASSWORD + "\n",
        env=env,
    )
    assert created.exit_code == 0, created.output
    old = json.loads(created.stdout)
    settings = load_settings(env)

    async def lock_and_start_a_session() -> None:
        engine = create_engine(settings.effective_database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    platform_admins.update().values(
                        locked_until=datetime.now(UTC) + timedelta(hours=4), lock_count=3
                    )
                )
        finally:
            await engine.dispose()

    asyncio.run(lock_and_start_a_session())

    reset = runner.invoke(main, ["admin", "reset-factor", "--email", "Root@Example.com", "--json"], env=env)
    assert reset.exit_code == 0, reset.output
    new = json.loads(reset.stdout)
    assert new["user_id"] == old["user_id"]
    assert new["otpauth_uri"] != old["otpauth_uri"] and len(new["recovery_codes"]) == 10
    assert not set(new["recovery_codes"]) & set(old["recovery_codes"])
    # Nothing secret on the command line: the command takes no password or code option.
    help_text = runner.invoke(main, ["admin", "reset-factor", "--help"]).output
    assert "--password" not in help_text and "--code" not in help_text

    async def sign_in(code: str) -> int:
        container = build_container(settings)
        try:
            await container.admin.login(
                "root@example.com", ADMIN_PASSWORD, code, RequestContext(ip="192.0.2.5")
            )
            return 200
        except ApplicationError as error:
            assert error.code == "invalid_credentials"
            return 401
        finally:
            await container.stop()

    # Unlocked, and only the new codes work: an old recovery code is refused, a new one accepted.
    assert asyncio.run(sign_in(old["recovery_codes"][0])) == 401
    assert asyncio.run(sign_in(new["recovery_codes"][0])) == 200

    async def audit() -> list[Any]:
        engine = create_engine(settings.effective_database_url)
        try:
            async with engine.connect() as conn:
                query = select(audit_events).where(audit_events.c.action == "admin.factor_reset")
                return list(await conn.execute(query))
        finally:
            await engine.dispose()

    [entry] = asyncio.run(audit())
    assert entry.actor_kind == "system" and entry.source_ip == "cli" and entry.target_id == old["user_id"]
    assert entry.details["before"]["lock_count"] == 3 and entry.details["after"]["lock_count"] == 0
    assert entry.details["via"] == "cli"

    unknown = runner.invoke(main, ["admin", "reset-factor", "--email", "nobody@example.com"], env=env)
    assert unknown.exit_code == 2
