"""The API against its own OpenAPI documents, with schemathesis: a real `bulwark serve` on
loopback, a verified user's real session (and a platform administrator's, for the admin
document), bounded generated requests per operation. Every answer must be documented (status,
content type, body schema) and none may be a 5xx."""

import contextlib
import email
import email.policy
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
import schemathesis
from aiosmtpd.controller import Controller
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.cluster import private_redis
from tests.e2e.test_cli_serve import clean_env, free_port
from tests.e2e.test_mail_smtp import Inbox

pytestmark = pytest.mark.slow

BULWARK = Path(sys.executable).parent / "bulwark"
FRONTEND = "https://app.example.com"
PASSWORD = "a long and unguessable passphrase 7"
ADMIN_PASSWORD = "an entirely separate admin passphrase 9"
CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance)
# Operations that end the very session the run uses: answered once, last, by their own tests.
ENDS_THE_SESSION = {"logout", "adminLogout"}


@dataclass
class Running:
    base: str
    token: str
    org_id: str
    admin_cookie: str
    admin_cookie_name: str


def _start(tmp: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = (tmp / "serve.log").open("w")
    process = subprocess.Popen(
        [str(BULWARK), "serve", "--port", str(port), "--workers", "1"],
        cwd=tmp,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        assert process.poll() is None, (tmp / "serve.log").read_text()
        try:
            if httpx.get(f"{base}/healthz/ready", timeout=2).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError((tmp / "serve.log").read_text())


def _verified_session(base: str, inbox: Inbox) -> tuple[str, str]:
    address = f"schema-{time.monotonic_ns()}@example.com"
    with httpx.Client(base_url=base, headers={"origin": FRONTEND}, timeout=10) as client:
        assert client.post(
            "/api/v1/auth/register", json={"email": address, "password": PASSWORD, "display_name": "Schema"}
        ).is_success
        deadline = time.monotonic() + 10
        while not inbox.envelopes and time.monotonic() < deadline:
            time.sleep(0.05)
        message = email.message_from_bytes(inbox.envelopes[-1].content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
        token = re.search(r"verify-email\?token=([A-Za-z0-9_-]+)", body)
        assert token, body
        assert client.post("/api/v1/auth/verify-email", json={"token": token.group(1)}).is_success
        login = client.post("/api/v1/auth/login", json={"email": address, "password": PASSWORD})
        assert login.status_code == 200, login.text
        access = login.json()["access_token"]
        me = client.get("/api/v1/me", headers={"authorization": f"Bearer {access}"}).json()
    return access, str(me["current_org"]["id"])


def _admin_session(base: str, tmp: Path, env: dict[str, str]) -> tuple[str, str]:
    created = subprocess.run(
        [str(BULWARK), "admin", "create", "--email", "root@example.com", "--json"],
        cwd=tmp,
        env=env,
        input=ADMIN_PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    secret = pyotp.parse_uri(json.loads(created.stdout)["otpauth_uri"]).secret
    body = {
        "email": "root@example.com",
        "admin_password": ADMIN_PASSWORD,
        "totp_code": pyotp.TOTP(secret).now(),
    }
    login = httpx.post(f"{base}/api/admin/v1/login", json=body, headers={"origin": FRONTEND}, timeout=10)
    assert login.status_code == 200, login.text
    name, value = login.headers["set-cookie"].split(";", 1)[0].split("=", 1)
    return name, value


@pytest.fixture(scope="module", params=["embedded", "postgres+redis"])
def running(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("schema")
    with contextlib.ExitStack() as stack:
        inbox, smtp_port = Inbox(), free_port()
        smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port, server_hostname="mx.test")
        smtp.start()
        stack.callback(smtp.stop)
        env = clean_env(
            BULWARK_DATA_DIR=str(tmp / "data"),
            BULWARK_FRONTEND_URL=FRONTEND,
            BULWARK_SMTP_HOST="127.0.0.1",
            BULWARK_SMTP_PORT=str(smtp_port),
            BULWARK_SMTP_STARTTLS="false",
            BULWARK_ARGON2_MEMORY_KIB="19456",
        )
        if request.param == "postgres+redis":
            env["BULWARK_DATABASE_URL"] = request.getfixturevalue("module_pg_url")
            # A server process has no key prefix: a Redis of its own keeps its keys and channels apart.
            env["BULWARK_REDIS_URL"] = stack.enter_context(private_redis(tmp))
        migrated = subprocess.run(
            [str(BULWARK), "db", "upgrade"], cwd=tmp, env=env, capture_output=True, timeout=120
        )
        assert migrated.returncode == 0, migrated.stderr
        process, base = _start(tmp, env)
        stack.callback(_stop, process)
        token, org_id = _verified_session(base, inbox)
        name, cookie = _admin_session(base, tmp, env)
        yield Running(base, token, org_id, cookie, name)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


_BOUNDED = settings(
    # CI's bound; a deeper run by hand: BULWARK_TEST_SCHEMA_EXAMPLES=200.
    max_examples=int(os.environ.get("BULWARK_TEST_SCHEMA_EXAMPLES", "12")),
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    database=None,
)


def _exercise(schema_url: str, running: Running, headers: dict[str, str], succeeded: set[str]) -> list[str]:
    """Every operation, a bounded number of generated requests each; the failures, named.
    `succeeded` gathers the operations that answered a 2xx at least once."""
    schema = schemathesis.openapi.from_url(schema_url)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.definition.raw.get("operationId") in ENDS_THE_SESSION:
            continue  # would end the run's own session; the session tests cover it

        @given(case=operation.as_strategy())
        @_BOUNDED
        def check(case: Any) -> None:
            if "org_id" in (case.path_parameters or {}):
                case.path_parameters["org_id"] = running.org_id  # the caller's own org: past the 404
            response = case.call(base_url=running.base, headers={"origin": FRONTEND, **headers})
            if 200 <= response.status_code < 300:
                succeeded.add(case.operation.label)
            case.validate_response(response, checks=CHECKS)

        try:
            check()
        except Exception as failure:  # every operation is tried; all failures are reported
            failures.append(f"{operation.label}: {failure}")
    return failures


def test_public_api_matches_its_schema(running: Running) -> None:
    succeeded: set[str] = set()
    failures = _exercise(
        f"{running.base}/schema", running, {"authorization": f"Bearer {running.token}"}, succeeded
    )
    assert not failures, "\n\n".join(failures)
    # The run went past the front door: the session and the org in the path were accepted.
    assert {
        "GET /api/v1/me",
        "GET /api/v1/orgs/{org_id}/members",
        "GET /api/v1/orgs/{org_id}/audit",
    } <= succeeded


def test_admin_api_matches_its_schema(running: Running) -> None:
    cookie = {"cookie": f"{running.admin_cookie_name}={running.admin_cookie}"}
    succeeded: set[str] = set()
    failures = _exercise(f"{running.base}/api/admin/v1/schema", running, cookie, succeeded)
    assert not failures, "\n\n".join(failures)
    assert {"GET /api/admin/v1/me", "GET /api/admin/v1/users"} <= succeeded, succeeded
