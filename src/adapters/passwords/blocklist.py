"""The common-password blocklist shipped with Bulwark.

common_passwords.txt.gz is Django's django/contrib/auth/common-passwords.txt.gz (Django 5.2.19,
BSD-3-Clause, copyright Django Software Foundation and contributors; see
common_passwords.LICENSE.txt next to it): about 20,000 passwords most seen in breaches."""

import functools
import gzip
from importlib import resources

_DATA_FILE = "common_passwords.txt.gz"


@functools.cache
def common_passwords() -> frozenset[str]:
    """Loaded once, on first use (about 20,000 short strings, ~2 MB in memory)."""
    with resources.files(__package__).joinpath(_DATA_FILE).open("rb") as raw:
        text = gzip.decompress(raw.read()).decode("utf-8")
    entries = frozenset(line.strip().casefold() for line in text.splitlines() if line.strip())
    if len(entries) < 10_000:  # a truncated/corrupt package must not silently weaken the policy
        raise RuntimeError(f"common-password blocklist has only {len(entries)} entries")
    return entries


def is_common_password(password: str) -> bool:
    """Case-insensitive membership, the `is_common` callable for domain.password_policy."""
    return password.casefold() in common_passwords()
