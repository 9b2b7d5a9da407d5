"""PyOtpTotpService and SegnoQrRenderer against an independent RFC 6238 implementation and a real QR decoder.

Codes are derived here with hmac/hashlib/struct only (never with pyotp or the adapter), at fixed clocks.
"""

import base64
import hashlib
import hmac
import io
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qs, unquote, urlsplit

import cairosvg
import pyotp
import pytest
import zxingcpp
from PIL import Image

from adapters.otp.pyotp_totp import PyOtpTotpService
from adapters.otp.segno_qr import SegnoQrRenderer

# A fixed secret and a clock 10 s into its step, so results are reproducible run to run.
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
NOW = datetime(2024, 5, 17, 12, 0, 10, tzinfo=UTC)
STEP = int(NOW.timestamp()) // 30

RFC_SECRET = b"12345678901234567890"
# RFC 6238 appendix B, SHA-1 column: (unix time, 8-digit TOTP).
RFC_SHA1_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


def rfc6238_code(key: bytes, step: int, digits: int = 6) -> str:
    """RFC 4226 HOTP over the RFC 6238 time step: HMAC-SHA1, dynamic truncation, modulo 10^digits."""
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    (value,) = struct.unpack(">I", mac[offset : offset + 4])
    return str((value & 0x7FFFFFFF) % 10**digits).zfill(digits)


def code_at_step(secret_b32: str, step: int) -> str:
    return rfc6238_code(base64.b32decode(secret_b32), step)


def window_codes(secret_b32: str, step: int) -> set[str]:
    return {code_at_step(secret_b32, s) for s in (step - 1, step, step + 1)}


@pytest.fixture
def totp() -> PyOtpTotpService:
    return PyOtpTotpService()


# --- the reference itself -------------------------------------------------------------------------


@pytest.mark.parametrize(("unix", "expected"), RFC_SHA1_VECTORS)
def test_reference_implementation_reproduces_rfc6238_appendix_b(unix: int, expected: str) -> None:
    assert rfc6238_code(RFC_SECRET, unix // 30, digits=8) == expected


@pytest.mark.parametrize(("unix", "expected"), RFC_SHA1_VECTORS)
def test_adapter_accepts_the_six_digit_rfc6238_vectors(
    totp: PyOtpTotpService, unix: int, expected: str
) -> None:
    secret = base64.b32encode(RFC_SECRET).decode()
    at = datetime.fromtimestamp(unix, tz=UTC)
    # A 6-digit code is the 8-digit one modulo 10^6, i.e. its last six digits.
    assert totp.matching_step(secret, expected[-6:], at, after_step=None) == unix // 30


# --- acceptance window ----------------------------------------------------------------------------


def test_current_code_is_accepted_and_returns_its_step(totp: PyOtpTotpService) -> None:
    assert totp.matching_step(SECRET, code_at_step(SECRET, STEP), NOW, after_step=None) == STEP


@pytest.mark.parametrize("offset", [-1, 1])
def test_adjacent_step_codes_are_accepted_for_clock_drift(totp: PyOtpTotpService, offset: int) -> None:
    code = code_at_step(SECRET, STEP + offset)
    assert totp.matching_step(SECRET, code, NOW, after_step=None) == STEP + offset


@pytest.mark.parametrize("offset", [-3, -2, 2, 3])
def test_codes_two_or_more_steps_away_are_refused(totp: PyOtpTotpService, offset: int) -> None:
    code = code_at_step(SECRET, STEP + offset)
    # Otherwise the refusal would not prove anything about the window.
    assert code not in window_codes(SECRET, STEP)
    assert totp.matching_step(SECRET, code, NOW, after_step=None) is None


def test_wrong_code_is_refused(totp: PyOtpTotpService) -> None:
    valid = window_codes(SECRET, STEP)
    wrong = next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in valid)
    assert totp.matching_step(SECRET, wrong, NOW, after_step=None) is None


def test_code_of_another_secret_is_refused(totp: PyOtpTotpService) -> None:
    other = "KRSXG5CTMVRXEZLUKN2XAZLSKNSWG4TF"
    code = code_at_step(other, STEP)
    assert code not in window_codes(SECRET, STEP)
    assert totp.matching_step(SECRET, code, NOW, after_step=None) is None


@pytest.mark.parametrize("seconds_into_step", [0, 29, 29.999])
def test_current_step_follows_the_clock_at_step_edges(
    totp: PyOtpTotpService, seconds_into_step: float
) -> None:
    at = datetime.fromtimestamp(STEP * 30, tz=UTC) + timedelta(seconds=seconds_into_step)
    assert totp.matching_step(SECRET, code_at_step(SECRET, STEP), at, after_step=None) == STEP
    # Two steps ahead is out of the window whatever the position inside the step.
    assert totp.matching_step(SECRET, code_at_step(SECRET, STEP + 2), at, after_step=None) is None


def test_clock_in_another_timezone_gives_the_same_step(totp: PyOtpTotpService) -> None:
    at = NOW.astimezone(timezone(timedelta(hours=-7)))
    assert totp.matching_step(SECRET, code_at_step(SECRET, STEP), at, after_step=None) == STEP


def test_naive_clock_is_refused(totp: PyOtpTotpService) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        totp.matching_step(SECRET, code_at_step(SECRET, STEP), NOW.replace(tzinfo=None), after_step=None)


# --- replay protection ----------------------------------------------------------------------------


def test_code_of_the_last_accepted_step_is_refused(totp: PyOtpTotpService) -> None:
    code = code_at_step(SECRET, STEP)
    accepted = totp.matching_step(SECRET, code, NOW, after_step=None)
    assert accepted == STEP
    assert totp.matching_step(SECRET, code, NOW, after_step=accepted) is None


def test_code_of_a_step_after_the_last_accepted_one_is_accepted(totp: PyOtpTotpService) -> None:
    assert totp.matching_step(SECRET, code_at_step(SECRET, STEP), NOW, after_step=STEP - 1) == STEP
    assert totp.matching_step(SECRET, code_at_step(SECRET, STEP + 1), NOW, after_step=STEP) == STEP + 1


@pytest.mark.parametrize("after", [STEP, STEP + 1])
def test_older_code_still_inside_the_window_is_refused_once_a_newer_step_was_accepted(
    totp: PyOtpTotpService, after: int
) -> None:
    assert totp.matching_step(SECRET, code_at_step(SECRET, STEP - 1), NOW, after_step=after) is None
    assert totp.matching_step(SECRET, code_at_step(SECRET, STEP), NOW, after_step=after) is None


# --- code format ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["{c}", " {c} ", "{a} {b}", "\t{a} {b}\n"])
def test_code_with_app_style_spacing_is_accepted(totp: PyOtpTotpService, shape: str) -> None:
    code = code_at_step(SECRET, STEP)
    typed = shape.format(c=code, a=code[:3], b=code[3:])
    assert totp.matching_step(SECRET, typed, NOW, after_step=None) == STEP


# Digits from other scripts, built by code point so the source stays ASCII.
FULLWIDTH = str.maketrans({str(d): chr(0xFF10 + d) for d in range(10)})
ARABIC_INDIC = str.maketrans({str(d): chr(0x0660 + d) for d in range(10)})


@pytest.mark.parametrize(
    "mangle",
    [
        lambda c: c[:5],  # too short
        lambda c: c + "0",  # too long
        lambda c: "0" + c,  # too long, other end
        lambda c: c[:2] + "a" + c[3:],  # a letter
        lambda c: c[:2] + " " + c[2:],  # space in the wrong place
        lambda c: c[:3] + "  " + c[3:],  # two spaces
        lambda c: c[:3] + "-" + c[3:],  # other separator
        lambda c: "+" + c[1:],  # sign
        lambda c: c.translate(FULLWIDTH),  # non-ASCII digits int() would accept
        lambda c: c.translate(ARABIC_INDIC),
        lambda c: "",
        lambda c: c * 10,
    ],
)
def test_malformed_code_is_refused(totp: PyOtpTotpService, mangle: Callable[[str], str]) -> None:
    typed = mangle(code_at_step(SECRET, STEP))
    assert totp.matching_step(SECRET, typed, NOW, after_step=None) is None


def test_full_width_digits_of_the_valid_code_are_refused_though_int_would_read_them(
    totp: PyOtpTotpService,
) -> None:
    code = code_at_step(SECRET, STEP)
    typed = code.translate(FULLWIDTH)
    assert int(typed) == int(code)
    assert totp.matching_step(SECRET, typed, NOW, after_step=None) is None


# --- secrets --------------------------------------------------------------------------------------


def test_new_secret_is_160_bits_of_base32(totp: PyOtpTotpService) -> None:
    secret = totp.new_secret()
    assert len(secret) == 32
    assert set(secret) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    assert len(base64.b32decode(secret)) == 20


def test_new_secret_differs_each_call(totp: PyOtpTotpService) -> None:
    secrets = {totp.new_secret() for _ in range(200)}
    assert len(secrets) == 200


def test_code_from_a_new_secret_is_accepted(totp: PyOtpTotpService) -> None:
    secret = totp.new_secret()
    assert totp.matching_step(secret, code_at_step(secret, STEP), NOW, after_step=None) == STEP


# --- provisioning URI -----------------------------------------------------------------------------


def test_provisioning_uri_carries_issuer_account_secret_and_parameters(totp: PyOtpTotpService) -> None:
    secret = totp.new_secret()
    uri = totp.provisioning_uri(secret, "alice@example.com", "Bulwark")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/Bulwark:alice@example.com"
    assert parse_qs(parts.query, strict_parsing=True) == {
        "secret": [secret],
        "issuer": ["Bulwark"],
        "algorithm": ["SHA1"],
        "digits": ["6"],
        "period": ["30"],
    }


def test_provisioning_uri_encodes_spaces_and_plus_signs_unambiguously(totp: PyOtpTotpService) -> None:
    uri = totp.provisioning_uri(SECRET, "a.b+trading@example.com", "Bulwark Staging")
    parts = urlsplit(uri)
    # '+' in a query means space to form decoders: a literal one would corrupt the issuer or account.
    assert "+" not in uri
    assert unquote(parts.path) == "/Bulwark Staging:a.b+trading@example.com"
    assert parse_qs(parts.query)["issuer"] == ["Bulwark Staging"]


def test_provisioning_uri_is_read_back_by_an_otpauth_parser(totp: PyOtpTotpService) -> None:
    uri = totp.provisioning_uri(SECRET, "alice@example.com", "Bulwark")
    parsed = pyotp.parse_uri(uri)
    assert isinstance(parsed, pyotp.TOTP)
    assert (parsed.secret, parsed.name, parsed.issuer) == (SECRET, "alice@example.com", "Bulwark")
    assert (parsed.digits, parsed.interval, parsed.digest().name) == (6, 30, "sha1")


@pytest.mark.parametrize(
    ("account", "issuer"), [("a:b@example.com", "Bulwark"), ("a@example.com", "Bul:wark")]
)
def test_provisioning_uri_refuses_a_colon_that_would_make_the_label_ambiguous(
    totp: PyOtpTotpService, account: str, issuer: str
) -> None:
    with pytest.raises(ValueError, match="':'"):
        totp.provisioning_uri(SECRET, account, issuer)


# --- QR code --------------------------------------------------------------------------------------


def decode_svg_qr(svg: str) -> list[zxingcpp.Barcode]:
    png = cairosvg.svg2png(bytestring=svg.encode("utf-8"))
    assert png is not None
    return list(zxingcpp.read_barcodes(Image.open(io.BytesIO(png))))


def test_qr_svg_decodes_back_to_the_otpauth_uri(totp: PyOtpTotpService) -> None:
    uri = totp.provisioning_uri(totp.new_secret(), "alice@example.com", "Bulwark")
    barcodes = decode_svg_qr(SegnoQrRenderer().svg(uri))
    assert len(barcodes) == 1
    assert barcodes[0].text == uri
    assert barcodes[0].format == zxingcpp.BarcodeFormat.QRCode
    assert barcodes[0].ec_level == "M"


def test_qr_for_short_data_is_a_full_qr_code_not_a_micro_qr() -> None:
    # Authenticator apps only read full QR codes; segno would pick Micro QR for short data if allowed.
    barcodes = decode_svg_qr(SegnoQrRenderer().svg("x"))
    assert [(b.text, b.format) for b in barcodes] == [("x", zxingcpp.BarcodeFormat.QRCode)]


def test_qr_svg_is_a_self_contained_document() -> None:
    svg = SegnoQrRenderer().svg("otpauth://totp/Bulwark:a@example.com?secret=JBSWY3DPEHPK3PXP")
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    assert svg.rstrip().endswith("</svg>")
    for forbidden in ("<?xml", "href", "<script", "<image", "url(", "<style"):
        assert forbidden not in svg
    # The payload is drawn, never embedded as text.
    assert "JBSWY3DPEHPK3PXP" not in svg
