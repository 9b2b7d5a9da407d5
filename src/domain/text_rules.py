"""What text a person may give us to store and show to others: no control characters (a NUL
breaks PostgreSQL's text type; others hide or reorder what a reader sees), and for email addresses
one canonical form and no look-alikes of another address."""

import unicodedata

# Bidirectional overrides and isolates: they make a name read differently from what it is.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def has_control_characters(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cs") or ch in _BIDI_CONTROLS for ch in text)


def _script(ch: str) -> str | None:
    """The script of a letter, from its Unicode name (LATIN, CYRILLIC, GREEK, ...); None for
    anything but letters, so digits and punctuation mix with every script."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    return unicodedata.name(ch, "UNKNOWN").split(" ", 1)[0]


def canonical_email(address: str) -> str:
    """NFC and lower case: the form stored and looked up."""
    return unicodedata.normalize("NFC", address.strip()).lower()


def email_problem(address: str) -> str | None:
    """Why an address (already canonical) cannot be an account's, or None."""
    if any(unicodedata.category(ch).startswith("C") for ch in address):
        return "it contains control or invisible characters"
    if unicodedata.normalize("NFKC", address) != address:
        return "it contains compatibility characters (such as fullwidth letters)"
    local = address.rpartition("@")[0]
    if len({s for s in map(_script, local) if s is not None}) > 1:
        return "its local part mixes scripts"
    return None
