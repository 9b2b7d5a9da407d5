"""`bulwark admin` as an operator runs it (embedded backend): the admin password from stdin, never
argv; the enrolment printed once; list and unlock."""

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from entrypoints.cli import main

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
