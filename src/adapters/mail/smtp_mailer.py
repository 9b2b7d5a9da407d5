"""Mailer over SMTP (aiosmtplib).

Mail bodies carry single-use tokens (verification, password reset), so neither the body nor the
SMTP password ever reaches a log line or an exception message."""

import logging
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr

import aiosmtplib

from application.ports.mailer import MailMessage

logger = logging.getLogger(__name__)


class MailDeliveryError(Exception):
    """The mail was not handed over to the SMTP server (or was refused before sending)."""


def _refuse_line_breaks(field: str, value: str) -> None:
    # A CR or LF in a header value would let a caller add headers (Bcc:) or end the headers early.
    if "\r" in value or "\n" in value:
        raise MailDeliveryError(f"refusing to send: the {field} contains a line break")


def checked_recipient(message: MailMessage) -> str:
    """Validate `message` headers and return the one envelope recipient address.

    Exactly one address is accepted, so "victim@x, attacker@y" cannot copy a token elsewhere."""
    _refuse_line_breaks("recipient", message.to)
    _refuse_line_breaks("subject", message.subject)
    addresses = getaddresses([message.to])
    if len(addresses) != 1:
        raise MailDeliveryError("refusing to send: the recipient must be exactly one address")
    address = addresses[0][1]
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(ch.isspace() for ch in address):
        raise MailDeliveryError("refusing to send: the recipient is not an email address")
    return address


class SmtpMailer:
    """Sends each message on its own SMTP connection (mail volume is low: sign-up, reset, alerts)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        username: str | None,
        password: str | None,
        starttls: bool,
        timeout: float = 10,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if "\r" in sender or "\n" in sender:
            raise ValueError("the sender contains a line break")
        sender_address = parseaddr(sender)[1]
        if "@" not in sender_address:
            raise ValueError(f"the sender {sender!r} has no email address")
        if (username is None) != (password is None):
            raise ValueError("give both an SMTP username and password, or neither")
        self._host = host
        self._port = port
        self._sender = sender
        self._sender_address = sender_address
        # Message-IDs name the sender's domain: make_msgid() without one calls getfqdn(), a DNS lookup.
        self._msgid_domain = sender_address.rpartition("@")[2]
        self._username = username
        self._password = password
        # True means STARTTLS is required: a server not offering it fails the send instead of
        # silently downgrading to plaintext (aiosmtplib's None would be opportunistic).
        self._starttls = starttls
        self._timeout = timeout
        self._tls_context = tls_context

    def __repr__(self) -> str:
        # Never show the password, e.g. in a debugger or a crash report listing locals.
        return f"SmtpMailer({self._host!r}, {self._port}, sender={self._sender!r}, starttls={self._starttls})"

    def build(self, message: MailMessage) -> EmailMessage:
        """The RFC 5322 message for `message` (raises MailDeliveryError on unsafe headers)."""
        checked_recipient(message)
        mail = EmailMessage()
        mail["From"] = self._sender
        mail["To"] = message.to
        mail["Subject"] = message.subject
        mail["Date"] = format_datetime(datetime.now(UTC))
        mail["Message-ID"] = make_msgid(domain=self._msgid_domain)
        # Quoted-printable keeps the wire 7-bit, so non-ASCII bodies survive servers without 8BITMIME.
        mail.set_content(message.body, subtype="plain", charset="utf-8", cte="quoted-printable")
        return mail

    async def send(self, message: MailMessage) -> None:
        recipient = checked_recipient(message)
        mail = self.build(message)
        try:
            errors, _ = await aiosmtplib.send(
                mail,
                sender=self._sender_address,
                recipients=[recipient],
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                start_tls=self._starttls,
                tls_context=self._tls_context,
                timeout=self._timeout,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            # The text of these errors is the server's reply or a socket error: neither holds the
            # body or the password.
            raise MailDeliveryError(
                f"SMTP delivery via {self._host}:{self._port} failed: {type(error).__name__}: {error}"
            ) from error
        if errors:
            raise MailDeliveryError(f"SMTP server {self._host}:{self._port} refused the recipient")
        logger.info("mail sent via SMTP to %s, subject %r", recipient, message.subject)
