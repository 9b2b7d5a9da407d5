"""`bulwark` as an operator runs it: a real process, a clean environment, a fresh directory."""

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

BULWARK = Path(sys.executable).parent / "bulwark"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULWARK_")}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BULWARK), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *named: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in named:
        assert word in lines[0], lines[0]


def test_serve_with_no_configuration_answers_ready_and_schema(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(BULWARK), "serve", "--port", str(port)],
            cwd=tmp_path,
            env=clean_env(BULWARK_DATA_DIR=str(data)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            ready: httpx.Response | None = None
            while time.monotonic() < deadline:
                assert process.poll() is None, log_path.read_text()
                try:
                    ready = httpx.get(f"http://127.0.0.1:{port}/healthz/ready", timeout=2)
                    if ready.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            assert ready is not None and ready.status_code == 200, log_path.read_text()
            schema = httpx.get(f"http://127.0.0.1:{port}/schema", timeout=5)
            assert schema.status_code == 200
            assert schema.json()["openapi"].startswith("3.1")
            assert "/healthz/ready" in schema.json()["paths"]
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
                stopped_on_signal = True
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                stopped_on_signal = False
    output = log_path.read_text()
    assert stopped_on_signal, f"SIGINT did not stop the server within 15 s:\n{output}"
    assert "DEVELOPMENT MODE" in output, output
    keys = data / "keys.json"
    assert keys.is_file()
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert (data / "bulwark.sqlite3").is_file()  # embedded mode migrated its own database


def test_production_with_nothing_configured_refuses_in_one_line(tmp_path: Path) -> None:
    result = run(["serve"], tmp_path, clean_env(BULWARK_ENV="production", BULWARK_DATA_DIR=str(tmp_path)))
    assert_one_line_error(result, "production", "BULWARK_DATABASE_URL")


def test_bad_port_refuses_in_one_line_naming_the_variable(tmp_path: Path) -> None:
    result = run(["serve"], tmp_path, clean_env(BULWARK_PORT="abc", BULWARK_DATA_DIR=str(tmp_path)))
    assert_one_line_error(result, "BULWARK_PORT")


def test_audit_verify_on_a_fresh_database_is_intact(tmp_path: Path) -> None:
    env = clean_env(BULWARK_DATA_DIR=str(tmp_path / "data"))
    upgraded = run(["db", "upgrade"], tmp_path, env)
    assert upgraded.returncode == 0, upgraded.stderr
    verified = run(["audit", "verify"], tmp_path, env)
    assert verified.returncode == 0, verified.stderr
    assert "intact" in verified.stdout


def test_grant_service_role_on_sqlite_refuses_in_one_line(tmp_path: Path) -> None:
    env = clean_env(BULWARK_DATA_DIR=str(tmp_path / "data"))
    assert run(["db", "upgrade"], tmp_path, env).returncode == 0
    assert_one_line_error(run(["db", "grant-service-role", "bulwark_app"], tmp_path, env), "PostgreSQL")


def test_grant_service_role_on_postgres_makes_a_role_the_server_can_use(
    tmp_path: Path, fresh_pg_url: str
) -> None:
    env = clean_env(BULWARK_DATA_DIR=str(tmp_path / "data"), BULWARK_DATABASE_URL=fresh_pg_url)
    granted = run(["db", "grant-service-role", "bulwark_app_cli_test"], tmp_path, env)
    assert granted.returncode == 0, granted.stderr
    assert "bulwark_app_cli_test" in granted.stdout
    again = run(["db", "grant-service-role", "bulwark_app_cli_test"], tmp_path, env)
    assert again.returncode == 0 and "created" not in again.stdout, again.stdout
    assert_one_line_error(run(["db", "grant-service-role", "Bad-Name"], tmp_path, env), "Bad-Name")


def test_keys_init_vault_prints_the_public_half_and_the_public_api_refuses_the_vault_file(
    tmp_path: Path,
) -> None:
    import json

    env = clean_env(BULWARK_DATA_DIR=str(tmp_path / "data"))
    made = run(["keys", "init", "--vault", str(tmp_path / "vault.json")], tmp_path, env)
    assert made.returncode == 0, made.stderr
    printed = json.loads(made.stdout)
    assert set(printed) == {"sealing_key_id", "public_key"}
    assert stat.S_IMODE((tmp_path / "vault.json").stat().st_mode) == 0o600
    assert run(["keys", "init", str(tmp_path / "keys.json")], tmp_path, env).returncode == 0
    imported = run(
        [
            "keys",
            "import-sealing-key",
            "--id",
            printed["sealing_key_id"],
            "--public-key",
            printed["public_key"],
        ],
        tmp_path,
        {**env, "BULWARK_KEYS_FILE": str(tmp_path / "keys.json")},
    )
    assert imported.returncode == 0, imported.stderr
    assert printed["sealing_key_id"] in (tmp_path / "keys.json").read_text()
    assert "opening" not in (tmp_path / "keys.json").read_text()
    refused = run(["serve"], tmp_path, {**env, "BULWARK_KEYS_FILE": str(tmp_path / "vault.json")})
    assert_one_line_error(refused, "vault", "opening keys")


def test_production_refuses_an_in_process_vault_and_a_vault_without_its_key_file(tmp_path: Path) -> None:
    production = clean_env(
        BULWARK_ENV="production",
        BULWARK_DATA_DIR=str(tmp_path),
        BULWARK_DATABASE_URL="postgresql+asyncpg://bulwark@127.0.0.1:1/none",
        BULWARK_REDIS_URL="redis://127.0.0.1:1/0",
        BULWARK_KEYS_FILE=str(tmp_path / "keys.json"),
        BULWARK_SMTP_HOST="smtp.invalid",
        BULWARK_FRONTEND_URL="https://app.example.com",
    )
    assert run(["keys", "init", str(tmp_path / "keys.json")], tmp_path, clean_env()).returncode == 0
    assert (
        run(["keys", "init", "--vault", str(tmp_path / "vault.json")], tmp_path, clean_env()).returncode == 0
    )
    refused = run(
        ["serve"], tmp_path, {**production, "BULWARK_VAULT_KEYS_FILE": str(tmp_path / "vault.json")}
    )
    assert_one_line_error(refused, "BULWARK_VAULT_KEYS_FILE")
    assert_one_line_error(run(["vault", "serve"], tmp_path, production), "BULWARK_VAULT_KEYS_FILE")
    with_ctrader = {
        **production,
        "BULWARK_CTRADER_CLIENT_ID": "1",
        "BULWARK_CTRADER_REDIRECT_URI": "https://a.example/cb",
    }
    assert_one_line_error(run(["serve"], tmp_path, with_ctrader), "sealing key")


def test_service_clients_are_created_once_listed_and_disabled(tmp_path: Path) -> None:
    import json

    env = clean_env(BULWARK_DATA_DIR=str(tmp_path / "data"))
    made = run(
        ["service-clients", "create", "trading-worker", "--scope", "broker_credentials:use"], tmp_path, env
    )
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert set(created) == {"client_id", "client_secret"} and len(created["client_secret"]) >= 43
    listed = run(["service-clients", "list"], tmp_path, env)
    assert "trading-worker" in listed.stdout and "active" in listed.stdout
    assert created["client_secret"] not in listed.stdout
    assert_one_line_error(
        run(["service-clients", "create", "x", "--scope", "everything:do"], tmp_path, env), "scope"
    )
    assert run(["service-clients", "disable", "trading-worker"], tmp_path, env).returncode == 0
    assert "disabled" in run(["service-clients", "list"], tmp_path, env).stdout
    assert_one_line_error(run(["service-clients", "disable", "nobody"], tmp_path, env), "nobody")


def test_vault_rotate_adds_a_key_reseals_and_prints_the_public_half(tmp_path: Path) -> None:
    import json

    env = clean_env(
        BULWARK_DATA_DIR=str(tmp_path / "data"), BULWARK_VAULT_KEYS_FILE=str(tmp_path / "vault.json")
    )
    first = json.loads(run(["keys", "init", "--vault", str(tmp_path / "vault.json")], tmp_path, env).stdout)
    rotated = run(["vault", "rotate"], tmp_path, env)
    assert rotated.returncode == 0, rotated.stderr
    printed = json.loads(rotated.stdout)
    assert printed["sealing_key_id"] != first["sealing_key_id"]
    assert "re-sealed 0" in rotated.stderr
    keys = json.loads((tmp_path / "vault.json").read_text())
    assert set(keys["opening_keys"]) == {first["sealing_key_id"], printed["sealing_key_id"]}
    assert keys["active_opening_key_id"] == printed["sealing_key_id"]


def test_egress_settings_are_checked_at_start_and_the_hetzner_token_comes_from_the_keyring(
    tmp_path: Path,
) -> None:
    bad_pool = run(
        ["serve"],
        tmp_path,
        clean_env(BULWARK_DATA_DIR=str(tmp_path), BULWARK_EGRESS_POOL="127.0.0.2,2001:db8::1"),
    )
    assert_one_line_error(bad_pool, "BULWARK_EGRESS_POOL", "2001:db8::1", "IPv4 only")
    keys = tmp_path / "keys.json"
    hetzner = clean_env(
        BULWARK_DATA_DIR=str(tmp_path),
        BULWARK_KEYS_FILE=str(keys),
        BULWARK_EGRESS_PROVIDER="hetzner",
        BULWARK_EGRESS_HETZNER_SERVER_ID="42",
        BULWARK_EGRESS_HETZNER_DATACENTER="fsn1-dc14",
    )
    assert run(["keys", "init", str(keys)], tmp_path, hetzner).returncode == 0
    assert_one_line_error(run(["serve"], tmp_path, hetzner), "hetzner_api_token", "bulwark keys set-secret")
    token = "hc-e2e-token-5c1d"
    stored = subprocess.run(
        [str(BULWARK), "keys", "set-secret", "hetzner_api_token"],
        input=token + "\n",
        cwd=tmp_path,
        env=hetzner,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stored.returncode == 0 and "hetzner_api_token stored" in stored.stdout
    assert token not in stored.stdout + stored.stderr and token in keys.read_text()
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
