"""TOTP (RFC 6238) and QR rendering ports for two-factor authentication."""

from datetime import datetime
from typing import Protocol

# The parameters every mainstream authenticator app (Google Authenticator, 1Password, Authy) supports.
TOTP_PERIOD_SECONDS = 30
TOTP_DIGITS = 6
# Steps accepted either side of the current one, for clock drift between phone and server.
TOTP_DRIFT_STEPS = 1


class TotpService(Protocol):
    def new_secret(self) -> str:
        """A fresh random secret: 32 base32 characters (160 bits), no padding."""
        ...

    def provisioning_uri(self, secret: str, account: str, issuer: str) -> str:
        """`otpauth://totp/Issuer:account?secret=...&issuer=Issuer&algorithm=SHA1&digits=6&period=30`.

        Raises ValueError if issuer or account contains ':' (it would make the label ambiguous) or is empty.
        """
        ...

    def matching_step(self, secret: str, code: str, at: datetime, *, after_step: int | None) -> int | None:
        """The time step (unix seconds // 30) whose code equals `code`, or None.

        Candidates are the steps current-1, current and current+1 at `at` (timezone-aware); all three are
        compared in constant time. A step at or before `after_step` (the last step accepted for this user)
        is refused, which is what makes a code single-use. If several candidates match, the latest is
        returned, so storing it as the new `after_step` burns every code up to it.

        `code` must be exactly 6 ASCII digits; surrounding whitespace and one space in the middle
        ("123 456", as the apps display it) are tolerated. Anything else returns None.
        """
        ...


class QrRenderer(Protocol):
    def svg(self, data: str) -> str:
        """A self-contained SVG document (no XML declaration, no external resources) encoding `data`."""
        ...
