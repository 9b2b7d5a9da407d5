"""Mailer for embedded/development mode: nothing leaves the machine.

The developer needs the body (it holds the link to click), so unlike SmtpMailer this one logs it.
Never wire it in production."""

import asyncio
import json
import logging
import os
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

from adapters.mail.smtp_mailer import checked_recipient
from application.ports.mailer import MailMessage

KEPT_IN_MEMORY = 100


class DevOutboxMailer:
    """Logs each mail, appends it as a JSON line to `path` and keeps the last 100 in memory."""

    def __init__(self, path: Path, *, logger: logging.Logger) -> None:
        self._path = path
        self._logger = logger
        self._messages: deque[MailMessage] = deque(maxlen=KEPT_IN_MEMORY)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def messages(self) -> list[MailMessage]:
        """The last messages sent, oldest first (a copy)."""
        return list(self._messages)

    async def send(self, message: MailMessage) -> None:
        # Same header checks as SMTP, so development shows what production would refuse.
        checked_recipient(message)
        line = json.dumps(
            {
                "sent_at": datetime.now(UTC).isoformat(),
                "to": message.to,
                "subject": message.subject,
                "body": message.body,
            },
            ensure_ascii=False,
        )
        await asyncio.to_thread(self._append, line)
        self._messages.append(message)
        self._logger.info(
            "[dev outbox] mail to %s, subject %r:\n%s", message.to, message.subject, message.body
        )

    def _append(self, line: str) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # The outbox holds live tokens: owner-only, also when the file existed with wider rights.
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)
            # One write() per line with O_APPEND keeps concurrent lines whole.
            os.write(fd, (line + "\n").encode("utf-8"))
        finally:
            os.close(fd)
