"""Housekeeping's settings: a retention too short to outlive a revoked session's access tokens is
refused (the revocation store reloads recently revoked sessions from the database), and the
longest rate-limit window is the longest any limit setting names."""

import dataclasses

import pytest

from entrypoints.composition import longest_limit_window
from entrypoints.settings import Settings, validate
from tests.unit.test_settings import load, refusal


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BULWARK_HOUSEKEEPING_RETENTION_DAYS", "0.5"),
        ("BULWARK_HOUSEKEEPING_BATCH_SIZE", "0"),
        ("BULWARK_HOUSEKEEPING_INTERVAL_SECONDS", "-1"),
    ],
)
def test_bad_housekeeping_settings_are_refused(name: str, value: str) -> None:
    assert name in refusal({name: value})


def test_housekeeping_is_off_in_the_workers_by_default() -> None:
    settings = load({})
    assert settings.housekeeping_interval_seconds == 0
    assert settings.housekeeping_retention_days == 30


def test_the_longest_limit_window_is_the_longest_configured() -> None:
    settings = dataclasses.replace(Settings(), mfa_limit_per_ip="3/60,10/86400")
    validate(settings)
    assert longest_limit_window(settings) == 86400
