"""Admin session and lockout settings are validated at start-up."""

from pathlib import Path

import pytest

from entrypoints.settings import SettingsError, load_settings


def settings_of(**env: str) -> object:
    return load_settings(
        {f"BULWARK_{k.upper()}": v for k, v in env.items()}, dotenv=Path("/nonexistent/.env")
    )


def test_defaults_are_the_issue_s() -> None:
    settings = load_settings({}, dotenv=Path("/nonexistent/.env"))
    assert settings.admin_session_idle_seconds == 1800
    assert settings.admin_session_absolute_seconds == 28800
    assert settings.admin_login_limit_per_account == "5/900"


@pytest.mark.parametrize(
    "env",
    [
        {"admin_lockout_seconds": ""},
        {"admin_lockout_seconds": "900,-1"},
        {"admin_lockout_seconds": "900,inf"},
        {"admin_login_limit_per_account": "five"},
        {"admin_session_idle_seconds": "0"},
        {"jwt_audience": "bulwark-admin"},
    ],
)
def test_bad_admin_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        settings_of(**env)
