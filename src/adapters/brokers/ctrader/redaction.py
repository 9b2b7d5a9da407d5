"""Keeps secrets out of what the cTrader adapters raise and log.

A broker's `description` is foreign text: it could echo what we sent (a token, the client secret),
so it is cut short and scrubbed before it reaches an exception message."""

from collections.abc import Iterable

MAX_DESCRIPTION = 200
REDACTED = "[redacted]"


def scrub(text: object, secrets: Iterable[str]) -> str:
    """`text` as a short string with every non-empty secret replaced."""
    result = text if isinstance(text, str) else ""
    for secret in secrets:
        if secret:
            result = result.replace(secret, REDACTED)
    # Cut after replacing, so a secret split by the cut cannot survive in part.
    return result[:MAX_DESCRIPTION]


def error_code(value: object, secrets: Iterable[str]) -> str:
    """The broker's `errorCode` as a short printable string, scrubbed like a description."""
    code = value if isinstance(value, str) else str(value)
    code = scrub("".join(ch for ch in code if ch.isprintable()), secrets)
    return code[:64] or "UNKNOWN"
