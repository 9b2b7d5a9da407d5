"""TotpService on pyotp: SHA-1, 6 digits, 30-second steps, ±1 step of drift, replay-aware."""

import hmac
from datetime import datetime
from urllib.parse import quote, urlencode

import pyotp

from application.ports.totp import TOTP_DIGITS, TOTP_DRIFT_STEPS, TOTP_PERIOD_SECONDS

_ASCII_DIGITS = frozenset("0123456789")
# pyotp refuses fewer than 32 characters; 32 base32 characters carry 160 bits (RFC 4226 recommends 160).
_SECRET_LENGTH = 32


def normalise_code(code: str) -> str | None:
    """The 6 digits of `code`, or None if it is not a well-formed code.

    Tolerates surrounding whitespace and a single space between the two groups of three ("123 456"),
    since that is how authenticator apps display codes. Only ASCII digits count: str.isdigit() would
    also accept e.g. Arabic-Indic or superscript digits.
    """
    if len(code) > 32:
        return None
    code = code.strip()
    if len(code) == TOTP_DIGITS + 1 and code[3] == " ":
        code = code[:3] + code[4:]
    if len(code) != TOTP_DIGITS or not set(code) <= _ASCII_DIGITS:
        return None
    return code


def _label_part(value: str, what: str) -> str:
    if not value or ":" in value:
        raise ValueError(f"{what} must be non-empty and contain no ':'")
    # '@' stays literal (emails read better in the apps); everything else, spaces included, is %-encoded.
    return quote(value, safe="@")


class PyOtpTotpService:
    def new_secret(self) -> str:
        # pyotp draws from secrets.SystemRandom.
        return pyotp.random_base32(length=_SECRET_LENGTH)

    def provisioning_uri(self, secret: str, account: str, issuer: str) -> str:
        label = f"{_label_part(issuer, 'issuer')}:{_label_part(account, 'account')}"
        # Defaults spelled out: some apps mis-handle absent parameters; quote (not quote_plus) so a
        # space in the issuer is %20, which every app decodes, rather than '+', which some show literally.
        query = urlencode(
            {
                "secret": secret,
                "issuer": issuer,
                "algorithm": "SHA1",
                "digits": str(TOTP_DIGITS),
                "period": str(TOTP_PERIOD_SECONDS),
            },
            quote_via=quote,
        )
        return f"otpauth://totp/{label}?{query}"

    def matching_step(self, secret: str, code: str, at: datetime, *, after_step: int | None) -> int | None:
        if at.tzinfo is None:
            # A naive datetime would be read as local time and shift the window by the UTC offset.
            raise ValueError("at must be timezone-aware")
        wanted = normalise_code(code)
        if wanted is None:
            return None
        totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD_SECONDS)
        current = int(at.timestamp()) // TOTP_PERIOD_SECONDS
        matched: int | None = None
        # No early exit: every candidate is generated and compared, so timing says nothing about which
        # step (if any) matched.
        for step in range(max(0, current - TOTP_DRIFT_STEPS), current + TOTP_DRIFT_STEPS + 1):
            candidate: str = totp.at(step * TOTP_PERIOD_SECONDS)
            equal = hmac.compare_digest(candidate, wanted)
            fresh = after_step is None or step > after_step
            if equal and fresh:
                matched = step
        return matched
