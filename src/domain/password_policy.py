"""Password acceptance rules after NIST SP 800-63B rev 4 (section 3.1.1.2).

Length is what matters: at least `min_length` Unicode code points after NFKC normalisation,
any characters (spaces, emoji, every script), no composition rules, never truncated. Rejected
besides: passwords found in a blocklist of commonly used ones, and passwords containing the
account's email local part (context-specific words an attacker would try first)."""

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_MIN_LENGTH = 15
# 800-63B: verifiers SHALL NOT require fewer than 8 characters.
MIN_LENGTH_FLOOR = 8
# 800-63B asks for at least 64 allowed; 256 is roomy for passphrases and bounds hashing input.
MAX_LENGTH = 256
# Reject absurd inputs before normalising them (NFKC cost is linear, but why pay it for 1 MB);
# generous because NFKC can shrink text (e.g. "e" + combining acute becomes one code point).
_MAX_RAW_LENGTH = 4 * MAX_LENGTH
# Shorter local parts ("jo", "a") would ban innocent substrings in most passphrases.
_MIN_EMAIL_PART = 3


@dataclass(frozen=True)
class PolicyVerdict:
    acceptable: bool
    # Completes "Password ...", e.g. "must be at least 15 characters"; None when acceptable.
    reason: str | None = None


ACCEPTABLE = PolicyVerdict(acceptable=True)


def normalise_password(password: str) -> str:
    """The one canonical form used for length, comparisons and hashing, so that the same
    password typed on different keyboards/IMEs (full-width, composed/decomposed) is the same."""
    return unicodedata.normalize("NFKC", password)


def validate_min_length(min_length: int) -> int:
    """Fail loudly on a misconfigured policy instead of silently accepting weak passwords."""
    if isinstance(min_length, bool) or not isinstance(min_length, int):
        raise TypeError("password min_length must be an int")
    if min_length < MIN_LENGTH_FLOOR:
        raise ValueError(
            f"password min_length {min_length} is below the NIST SP 800-63B floor of {MIN_LENGTH_FLOOR}"
        )
    if min_length > MAX_LENGTH:
        raise ValueError(f"password min_length {min_length} exceeds the maximum length {MAX_LENGTH}")
    return min_length


def _email_fragments(email: str) -> list[str]:
    folded_email = normalise_password(email).casefold()
    local = folded_email.rpartition("@")[0] or folded_email
    fragments = {local.strip()}
    # "alice+trading@..." -> "alice" too: the sub-address is the part people vary.
    fragments.add(local.split("+", 1)[0].strip())
    return [f for f in fragments if len(f) >= _MIN_EMAIL_PART]


def check_password(
    password: str,
    *,
    email: str,
    min_length: int = DEFAULT_MIN_LENGTH,
    is_common: Callable[[str], bool],
) -> PolicyVerdict:
    """Judge a new password. Raises ValueError/TypeError only for a bad configured min_length.

    `is_common` receives the NFKC-normalised, case-folded candidate and says whether it is in
    the blocklist (it should compare case-insensitively itself as well)."""
    validate_min_length(min_length)
    if len(password) > _MAX_RAW_LENGTH:
        return PolicyVerdict(False, f"must be at most {MAX_LENGTH} characters")
    normalised = normalise_password(password)
    length = len(normalised)  # code points, as 800-63B counts them
    if length < min_length:
        return PolicyVerdict(False, f"must be at least {min_length} characters")
    if length > MAX_LENGTH:
        return PolicyVerdict(False, f"must be at most {MAX_LENGTH} characters")
    folded = normalised.casefold()
    if any(fragment in folded for fragment in _email_fragments(email)):
        return PolicyVerdict(False, "must not contain your email address")
    if is_common(folded):
        return PolicyVerdict(False, "is too common")
    return ACCEPTABLE
