"""Verification mail over real SMTP: an aiosmtpd server on loopback receives what registration
sends, and the link in it verifies the account."""

import email
import email.policy
import re
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from entrypoints.settings import Settings
from tests.e2e.conftest import FRONTEND, Service
from tests.e2e.identity_helpers import login_response, register, service_with, unique_email


class Inbox:
    """aiosmtpd handler keeping every envelope it accepts."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    # server_hostname avoids aiosmtpd's getfqdn() DNS lookup.
    controller = Controller(inbox, hostname="127.0.0.1", port=port, server_hostname="mx.test")
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
async def smtp_service(
    service_settings: Settings, redis_namespace: str, smtp: tuple[Inbox, int]
) -> AsyncIterator[Service]:
    _, port = smtp
    async with service_with(
        service_settings, redis_namespace, smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False
    ) as service:
        yield service


async def test_verification_mail_arrives_over_smtp_and_its_link_verifies(
    smtp_service: Service, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    address = unique_email()
    r = await register(smtp_service.client, address)
    assert r.status_code == 202, r.text

    [envelope] = inbox.envelopes
    assert envelope.rcpt_tos == [address]
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert message["To"] == address
    body = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    match = re.search(rf"{re.escape(FRONTEND)}/verify-email\?token=([A-Za-z0-9_-]+)", body)
    assert match, body

    assert (await login_response(smtp_service.client, address)).json()["code"] == "email_not_verified"
    r = await smtp_service.client.post("/api/v1/auth/verify-email", json={"token": match.group(1)})
    assert r.status_code == 200, r.text
    assert (await login_response(smtp_service.client, address)).status_code == 200
