"""The password policy (NIST SP 800-63B rev 4) with the real shipped blocklist."""

import pytest

from adapters.passwords.blocklist import common_passwords, is_common_password
from domain.password_policy import MAX_LENGTH, PolicyVerdict, check_password, validate_min_length

EMAIL = "carol.trader@example.com"
GOOD = "correct horse battery staple"


def full_width(ascii_text: str) -> str:
    """The full-width (East Asian keyboard) spelling of printable ASCII, e.g. "ab" -> U+FF41 U+FF42."""
    return "".join(chr(0xFF00 + ord(c) - 0x20) if c != " " else c for c in ascii_text)


def judge(password: str, *, email: str = EMAIL, min_length: int = 15) -> PolicyVerdict:
    return check_password(password, email=email, min_length=min_length, is_common=is_common_password)


def test_long_passphrase_with_spaces_is_accepted() -> None:
    verdict = judge(GOOD)
    assert verdict.acceptable
    assert verdict.reason is None


def test_password_shorter_than_min_length_is_rejected_with_reason() -> None:
    verdict = judge("zq" * 7)
    assert not verdict.acceptable
    assert verdict.reason == "must be at least 15 characters"
    assert judge("zq" * 7 + "x").acceptable  # exactly 15


def test_configured_min_length_is_honoured() -> None:
    assert judge("zqxwvutsrp", min_length=10).acceptable
    assert judge("zqxwvutsr", min_length=10).reason == "must be at least 10 characters"


@pytest.mark.parametrize("bad", [7, 0, -1])
def test_min_length_below_nist_floor_is_refused_loudly(bad: int) -> None:
    with pytest.raises(ValueError, match="floor"):
        judge(GOOD, min_length=bad)
    with pytest.raises(ValueError):
        validate_min_length(bad)


def test_min_length_of_eight_is_allowed_and_above_max_is_refused() -> None:
    assert validate_min_length(8) == 8
    with pytest.raises(ValueError):
        validate_min_length(MAX_LENGTH + 1)


def test_length_counts_code_points_so_emoji_count_as_characters() -> None:
    # Each emoji is one code point (4 UTF-8 bytes): 15 of them is long enough, 14 is not.
    assert judge("\U0001f510" * 7 + "\U0001f4c8" * 8).acceptable
    assert not judge("\U0001f510" * 14).acceptable


def test_combining_characters_are_counted_after_nfkc_composition() -> None:
    # "e" + COMBINING ACUTE composes to the one code point "é": 16 raw code points but only
    # 14 characters after normalisation, so it is too short.
    decomposed = "re\u0301sume\u0301" + "xylophon"
    assert len(decomposed) == 16
    assert judge(decomposed).reason == "must be at least 15 characters"
    assert judge(decomposed + "q").acceptable


def test_full_width_letters_are_normalised_like_ascii() -> None:
    # NFKC maps the full-width spelling of "password123" to ASCII: the blocklist catches both.
    spelled_wide = full_width("password123")
    assert spelled_wide != "password123"
    assert judge("password123", min_length=8).reason == "is too common"
    assert judge(spelled_wide, min_length=8).reason == "is too common"


def test_password_of_max_length_is_accepted_and_longer_is_rejected_not_truncated() -> None:
    base = "the quick brown fox jumps over the lazy dog "
    exact = (base * 10)[:MAX_LENGTH]
    assert judge(exact).acceptable
    # Two 300-character passwords differing only after position 256: truncation would make
    # them equal and accept them; both must be refused.
    long_a = (base * 10)[:299] + "A"
    long_b = (base * 10)[:299] + "B"
    for long_password in (long_a, long_b):
        verdict = judge(long_password)
        assert not verdict.acceptable
        assert verdict.reason == f"must be at most {MAX_LENGTH} characters"


def test_huge_input_is_rejected_before_normalisation() -> None:
    assert judge("x" * 1_000_000).reason == f"must be at most {MAX_LENGTH} characters"


def test_blocklist_ships_at_least_ten_thousand_lowercase_entries() -> None:
    entries = common_passwords()
    assert len(entries) >= 10_000
    assert "password" in entries
    assert all(entry == entry.casefold() for entry in entries)


@pytest.mark.parametrize(
    "variant", ["password", "PASSWORD", "PassWord", "qwertyuiop", "QWERTYuiop", "Password123"]
)
def test_common_password_is_rejected_in_any_case(variant: str) -> None:
    verdict = judge(variant, min_length=8)
    assert not verdict.acceptable
    assert verdict.reason == "is too common"


def test_common_password_at_default_length_is_rejected() -> None:
    long_common = next(p for p in sorted(common_passwords()) if len(p) >= 15 and "carol" not in p)
    assert judge(long_common).reason == "is too common"
    assert judge(long_common.upper()).reason == "is too common"


def test_blocklist_compare_receives_normalised_casefolded_candidate() -> None:
    seen: list[str] = []

    def spy(candidate: str) -> bool:
        seen.append(candidate)
        return False

    check_password(full_width("MySecret") + " Passphrase", email=EMAIL, is_common=spy)
    assert seen == ["mysecret passphrase"]


@pytest.mark.parametrize(
    "password",
    [
        "carol.trader loves bonds",
        "my name is CAROL.TRADER ok",
        full_width("carol.trader") + "-2024-xyz",
    ],
)
def test_password_containing_email_local_part_is_rejected(password: str) -> None:
    verdict = judge(password)
    assert not verdict.acceptable
    assert verdict.reason == "must not contain your email address"


def test_sub_addressed_email_base_is_also_rejected() -> None:
    verdict = judge("dave and his long passphrase", email="dave+bulwark@example.com")
    assert verdict.reason == "must not contain your email address"


def test_very_short_local_part_does_not_ban_common_substrings() -> None:
    # "jo" is too short to be meaningful; "journey" must stay usable.
    assert judge("a journey of a thousand miles", email="jo@example.com").acceptable


def test_arbitrary_unicode_is_allowed() -> None:
    assert judge("Съешь же ещё этих мягких булок 🥐").acceptable
    assert judge("日本語のパスフレーズはとても長いです").acceptable
