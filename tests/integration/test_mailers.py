"""Mailers against a real SMTP server (aiosmtpd) on loopback, and the development outbox."""

import datetime as dt
import email
import email.policy
import ipaddress
import json
import logging
import socket
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adapters.mail.dev_outbox import DevOutboxMailer
from adapters.mail.smtp_mailer import MailDeliveryError, SmtpMailer
from application.ports.mailer import MailMessage

SENDER = "Bulwark <no-reply@bulwark.test>"
BODY = "Grüße! Confirm: https://app.test/verify?token=s3cr3t-t0ken-ÆØÅ-✓\n"
USER = "mailer"
PASSWORD = "correct horse battery staple"

# The plaintext-AUTH server is deliberate (the brief's auth_require_tls=False); the TLS path is
# covered by the STARTTLS tests below.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


def _free_port() -> int:
    # Controller does not accept port=0 everywhere: take a port the OS just handed out.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Collector:
    """aiosmtpd handler keeping every envelope it accepts."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


class _Authenticator:
    def __init__(self) -> None:
        self.attempts: list[tuple[bytes, bool]] = []

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        self.attempts.append((data.login if isinstance(data, LoginPassword) else b"", ok))
        # handled=False: aiosmtpd then answers 535 itself on failure (True would leave the client hanging).
        return AuthResult(success=ok, handled=False)


class _Server:
    def __init__(self, port: int, collector: _Collector, authenticator: _Authenticator | None) -> None:
        self.port = port
        self.collector = collector
        self.authenticator = authenticator

    @property
    def envelopes(self) -> list[Any]:
        return self.collector.envelopes


def _start(**smtp_kwargs: Any) -> tuple[Controller, _Server]:
    collector = _Collector()
    authenticator = smtp_kwargs.get("authenticator")
    port = _free_port()
    # server_hostname avoids aiosmtpd's getfqdn() DNS lookup.
    controller = Controller(
        collector, hostname="127.0.0.1", port=port, server_hostname="mx.test", **smtp_kwargs
    )
    controller.start()
    return controller, _Server(port, collector, authenticator)


@pytest.fixture
def smtp_server() -> Iterator[_Server]:
    controller, server = _start()
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture
def auth_smtp_server() -> Iterator[_Server]:
    controller, server = _start(authenticator=_Authenticator(), auth_required=True, auth_require_tls=False)
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bytes]:
    """A throwaway CA and a server certificate for 127.0.0.1: (cert file, key file, CA PEM)."""
    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("Bulwark test CA"))
        .issuer_name(name("Bulwark test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file, ca_cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def starttls_server(tls_material: tuple[Path, Path, bytes]) -> Iterator[_Server]:
    """Offers STARTTLS and accepts AUTH only after it."""
    cert_file, key_file, _ = tls_material
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    controller, server = _start(
        tls_context=server_context,
        require_starttls=True,
        authenticator=_Authenticator(),
        auth_required=True,
        auth_require_tls=True,
    )
    try:
        yield server
    finally:
        controller.stop()


def _mailer(port: int, **overrides: Any) -> SmtpMailer:
    options: dict[str, Any] = {
        "sender": SENDER,
        "username": None,
        "password": None,
        "starttls": False,
        "timeout": 3,
    }
    options.update(overrides)
    return SmtpMailer("127.0.0.1", port, **options)


def _parsed(envelope: Any) -> email.message.EmailMessage:
    message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def _body(envelope: Any) -> str:
    # SMTP carries CRLF line endings; the body we sent had LF.
    return str(_parsed(envelope).get_content()).replace("\r\n", "\n")


# --- SMTP -----------------------------------------------------------------------------------


async def test_message_arrives_with_its_headers_and_utf8_body_intact(smtp_server: _Server) -> None:
    await _mailer(smtp_server.port).send(MailMessage("alice@example.test", "Vérifiez votre adresse", BODY))

    [envelope] = smtp_server.envelopes
    assert envelope.mail_from == "no-reply@bulwark.test"
    assert envelope.rcpt_tos == ["alice@example.test"]
    message = _parsed(envelope)
    assert message["From"] == SENDER
    assert message["To"] == "alice@example.test"
    assert message["Subject"] == "Vérifiez votre adresse"
    assert message["Date"] and message["Message-ID"].endswith("@bulwark.test>")
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert _body(envelope) == BODY
    # Sent 7-bit clean, so relays without 8BITMIME cannot mangle the token.
    assert envelope.original_content.isascii()


async def test_correct_credentials_are_accepted(auth_smtp_server: _Server) -> None:
    mailer = _mailer(auth_smtp_server.port, username=USER, password=PASSWORD)

    await mailer.send(MailMessage("bob@example.test", "Reset", "link"))

    assert len(auth_smtp_server.envelopes) == 1
    assert auth_smtp_server.authenticator is not None
    assert auth_smtp_server.authenticator.attempts == [(USER.encode(), True)]


async def test_wrong_password_raises_delivery_error_without_leaking_secrets(
    auth_smtp_server: _Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mailer = _mailer(auth_smtp_server.port, username=USER, password="wrong-password-value")

    with pytest.raises(MailDeliveryError) as raised:
        await mailer.send(MailMessage("bob@example.test", "Reset", "token-abc-123"))

    assert auth_smtp_server.envelopes == []
    assert auth_smtp_server.authenticator is not None
    # aiosmtplib tries each offered mechanism (PLAIN, LOGIN); every attempt was refused.
    attempts = auth_smtp_server.authenticator.attempts
    assert attempts and all(attempt == (USER.encode(), False) for attempt in attempts)
    assert "SMTPAuthenticationError" in str(raised.value)
    ours = [r for r in caplog.records if not r.name.startswith("mail.log")]  # aiosmtpd's own log
    for text in [str(raised.value), repr(mailer), *(r.getMessage() for r in ours)]:
        assert "wrong-password-value" not in text
        assert "token-abc-123" not in text


@pytest.mark.parametrize(
    ("to", "subject"),
    [
        ("alice@example.test\r\nBcc: mallory@evil.test", "Reset"),
        ("alice@example.test\nBcc: mallory@evil.test", "Reset"),
        ("alice@example.test", "Reset\r\nBcc: mallory@evil.test"),
        ("alice@example.test", "Reset\rX-Injected: yes"),
        ("alice@example.test, mallory@evil.test", "Reset"),
        ("not-an-address", "Reset"),
    ],
)
async def test_unsafe_recipient_or_subject_is_refused_and_nothing_is_sent(
    smtp_server: _Server, to: str, subject: str
) -> None:
    with pytest.raises(MailDeliveryError, match="refusing to send"):
        await _mailer(smtp_server.port).send(MailMessage(to, subject, "token"))

    assert smtp_server.envelopes == []


async def test_closed_port_raises_delivery_error() -> None:
    with pytest.raises(MailDeliveryError, match="failed"):
        await _mailer(_free_port(), timeout=2).send(MailMessage("a@example.test", "Hi", "x"))


async def test_required_starttls_is_not_downgraded_when_the_server_lacks_it(
    auth_smtp_server: _Server,
) -> None:
    mailer = _mailer(auth_smtp_server.port, username=USER, password=PASSWORD, starttls=True)

    with pytest.raises(MailDeliveryError):
        await mailer.send(MailMessage("a@example.test", "Hi", "x"))

    # The credentials never went over the plaintext connection.
    assert auth_smtp_server.authenticator is not None
    assert auth_smtp_server.authenticator.attempts == []
    assert auth_smtp_server.envelopes == []


async def test_starttls_with_trusted_certificate_delivers_and_authenticates(
    starttls_server: _Server, tls_material: tuple[Path, Path, bytes]
) -> None:
    trusting = ssl.create_default_context(cadata=tls_material[2].decode())
    mailer = _mailer(
        starttls_server.port, username=USER, password=PASSWORD, starttls=True, tls_context=trusting
    )

    await mailer.send(MailMessage("a@example.test", "Hi", BODY))

    assert starttls_server.authenticator is not None
    assert starttls_server.authenticator.attempts == [(USER.encode(), True)]
    assert _body(starttls_server.envelopes[0]) == BODY


async def test_starttls_with_untrusted_certificate_fails_before_sending_credentials(
    starttls_server: _Server,
) -> None:
    # Default context: the system CAs, which do not know the test CA.
    mailer = _mailer(starttls_server.port, username=USER, password=PASSWORD, starttls=True)

    with pytest.raises(MailDeliveryError):
        await mailer.send(MailMessage("a@example.test", "Hi", "x"))

    assert starttls_server.authenticator is not None
    assert starttls_server.authenticator.attempts == []
    assert starttls_server.envelopes == []


def test_sender_with_a_line_break_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="line break"):
        SmtpMailer(
            "127.0.0.1", 25, sender="a@b.test\r\nBcc: x@y.test", username=None, password=None, starttls=False
        )


# --- Development outbox ---------------------------------------------------------------------


async def test_dev_outbox_appends_json_line_with_owner_only_mode_and_keeps_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "data" / "outbox.jsonl"
    logger = logging.getLogger("bulwark.test.outbox")
    mailer = DevOutboxMailer(path, logger=logger)
    first = MailMessage("alice@example.test", "Vérifiez", BODY)
    second = MailMessage("bob@example.test", "Reset", "https://app.test/reset?t=1")

    with caplog.at_level(logging.INFO, logger=logger.name):
        await mailer.send(first)
        await mailer.send(second)

    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [(m["to"], m["subject"], m["body"]) for m in lines] == [
        ("alice@example.test", "Vérifiez", BODY),
        ("bob@example.test", "Reset", "https://app.test/reset?t=1"),
    ]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert mailer.messages == [first, second]
    logged = [r.getMessage() for r in caplog.records if r.name == logger.name]
    assert len(logged) == 2
    assert logged[0].startswith("[dev outbox]") and BODY in logged[0]


async def test_dev_outbox_tightens_an_existing_world_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    path.write_text("")
    path.chmod(0o644)

    await DevOutboxMailer(path, logger=logging.getLogger("t")).send(MailMessage("a@example.test", "S", "b"))

    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_dev_outbox_keeps_only_the_last_hundred_messages(tmp_path: Path) -> None:
    mailer = DevOutboxMailer(tmp_path / "outbox.jsonl", logger=logging.getLogger("t"))
    for i in range(105):
        await mailer.send(MailMessage("a@example.test", f"n{i}", "b"))

    assert [m.subject for m in mailer.messages] == [f"n{i}" for i in range(5, 105)]
    assert len((tmp_path / "outbox.jsonl").read_text().splitlines()) == 105


async def test_dev_outbox_refuses_header_injection_like_smtp(tmp_path: Path) -> None:
    mailer = DevOutboxMailer(tmp_path / "outbox.jsonl", logger=logging.getLogger("t"))

    with pytest.raises(MailDeliveryError):
        await mailer.send(MailMessage("a@example.test\r\nBcc: m@evil.test", "S", "b"))

    assert mailer.messages == []
    assert not (tmp_path / "outbox.jsonl").exists()
