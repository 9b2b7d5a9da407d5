"""Benchmark of the credential vault served like production: broker-credential accesses per second.

Run: .venv/bin/python bench/vault_access.py [--seconds 8] [--rounds 3] [--connections 200]

A throw-away PostgreSQL database migrated by its owner, `bulwark vault serve` (BULWARK_ENV=production,
granian with 2 workers) connecting as an unprivileged role under row-level security, Redis DB 15 for
the per-client limit (on, never tripping), a real vault key file. Broker connections are seeded
sealed with the vault's public half, their tokens valid for 30 days (no refresh: this measures the
access path). wrk (C) posts `/vault/v1/broker-connections/{id}/access` round robin over them, each
answer a token opened from its HPKE ciphertext with the audit entry committed; `/healthz/live` of the
same server is the ceiling, in alternating slices. Afterwards the audit log must hold one
`broker_credentials.accessed` entry per 200 answer. Results go to bench/results/vault.md."""

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import redis
from run import (  # bench/ sibling: the same wrk driver, database and server helpers
    LUA_COMMON,
    PG_ADMIN_DSN,
    REDIS_URL,
    SERVICE_ROLE,
    WrkResult,
    combined,
    create_database,
    drop_database,
    free_port,
    grant_service_role,
    interleaved,
    machine,
    migrate,
    run_bulwark,
    run_wrk,
    stop_process_group,
    wait_ready,
)
from seed_rows import org_with_owner

from adapters.crypto.hpke_sealing import HpkeSealer
from adapters.keys.keyring import generate_keyring, save_keyring
from adapters.keys.vault_keys import load_vault_keys
from application.ports.credential_sealing import broker_tokens_context

BENCH_DIR = Path(__file__).resolve().parent
TARGET_ACCESSES = 1000.0

LUA_ACCESS = r"""
local paths, token, i
function init(args)
  paths = lines_of(args[1])
  token = lines_of(args[2])[1]
  i = (id * 7919) % #paths
end
function request()
  i = i % #paths + 1
  return wrk.format("POST", paths[i], {["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json"}, '{"purpose":"bench-deployment"}')
end
function response(status, headers, body) note(status, body) end
"""


async def seed(owner_url: str, vault_keys_path: Path, count: int) -> list[str]:
    """Orgs, owners, memberships and sealed broker connections, written as the tables' owner."""
    keys = load_vault_keys(vault_keys_path)
    sealer = HpkeSealer(keys.active_opening_key_id, keys.public_halves()[keys.active_opening_key_id])
    now = datetime.now(UTC)
    conn = await asyncpg.connect(owner_url.replace("postgresql+asyncpg", "postgresql"))
    ids: list[str] = []
    try:
        for n in range(count):
            connection = uuid.uuid4()
            org, user = await org_with_owner(conn, n, now, "bench")
            tokens = {"access_token": secrets.token_urlsafe(32), "refresh_token": secrets.token_urlsafe(32)}
            sealed = sealer.seal(json.dumps(tokens).encode(), broker_tokens_context(connection, org))
            await conn.execute(
                "INSERT INTO broker_connections (id, org_id, kind, label, status, scope, accounts, "
                "created_by, created_at, access_expires_at, last_refreshed_at, generation, sealed_key_id, "
                "sealed_tokens) "
                "VALUES ($1, $2, 'ctrader', 'bench', 'active', 'trading', $3, $4, $5, $6, $5, 0, $7, $8)",
                connection,
                org,
                json.dumps(
                    [
                        {
                            "ctid_trader_account_id": 1000 + n,
                            "is_live": False,
                            "trader_login": n,
                            "broker": "Demo",
                        }
                    ]
                ),
                user,
                now,
                now + timedelta(days=30),
                sealed.key_id,
                sealed.ciphertext,
            )
            ids.append(str(connection))
    finally:
        await conn.close()
    return ids


async def audit_count(db_name: str, action: str) -> int:
    conn = await asyncpg.connect(PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{db_name}")
    try:
        return int(await conn.fetchval("SELECT count(*) FROM audit_events WHERE action = $1", action))
    finally:
        await conn.close()


def row(label: str, result: WrkResult) -> str:
    return f"| {label} | {result.rps:,.0f} | {result.p50_ms:.1f} | {result.p99_ms:.1f} | {result.errors} |"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--wrk-connections", type=int, default=32)
    options = parser.parse_args()

    db_name, owner_url = asyncio.run(create_database())
    redis_client = redis.Redis.from_url(REDIS_URL)
    workdir = Path(tempfile.mkdtemp(prefix="bulwark-vault-bench-"))
    process = None
    try:
        keyring_path, vault_path = workdir / "keys.json", workdir / "vault-keys.json"
        save_keyring(generate_keyring(generated=False), keyring_path)
        port = free_port()
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("BULWARK_")}
        base_env["PYTHONPATH"] = str(BENCH_DIR.parent / "src")
        owner_env = {**base_env, "BULWARK_DATABASE_URL": owner_url, "BULWARK_DATA_DIR": str(workdir)}
        migrate(owner_env, workdir)
        grant_service_role(owner_env, workdir)
        run_bulwark(["keys", "init", "--vault", str(vault_path)], owner_env, workdir)
        service_url = owner_url.replace("postgres@", f"{SERVICE_ROLE}@")
        env = {
            **base_env,
            "BULWARK_ENV": "production",
            "BULWARK_DATABASE_URL": service_url,
            "BULWARK_REDIS_URL": REDIS_URL,
            "BULWARK_KEYS_FILE": str(keyring_path),
            "BULWARK_VAULT_KEYS_FILE": str(vault_path),
            "BULWARK_SMTP_HOST": "127.0.0.1",
            "BULWARK_SMTP_PORT": str(free_port()),
            "BULWARK_FRONTEND_URL": "https://app.bench.invalid",
            "BULWARK_VAULT_PORT": str(port),
            "BULWARK_WORKERS": "2",
            "BULWARK_VAULT_ACCESS_LIMIT_PER_CLIENT": "1000000/1",
            "BULWARK_DATA_DIR": str(workdir),
            "BULWARK_LOG_LEVEL": "WARNING",
        }
        connection_ids = asyncio.run(seed(owner_url, vault_path, options.connections))
        created = run_bulwark(
            ["service-clients", "create", "bench-worker", "--scope", "broker_credentials:use"], env, workdir
        )
        client = json.loads(created)
        base = f"http://127.0.0.1:{port}"
        log_path = workdir / "vault.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(Path(sys.executable).parent / "bulwark"), "vault", "serve"],
                env=env,
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_ready(process, base, log_path)
        token = httpx.post(
            base + "/vault/v1/token",
            data={"grant_type": "client_credentials", "scope": "broker_credentials:use"},
            auth=(client["client_id"], client["client_secret"]),
        ).json()["access_token"]
        paths_file, token_file = workdir / "paths.txt", workdir / "token.txt"
        paths_file.write_text(
            "\n".join(f"/vault/v1/broker-connections/{c}/access" for c in connection_ids) + "\n"
        )
        token_file.write_text(token + "\n")
        access_lua, live_lua = workdir / "access.lua", workdir / "live.lua"
        access_lua.write_text(LUA_COMMON + LUA_ACCESS)
        live_lua.write_text(LUA_COMMON + "function response(status, headers, body) note(status, body) end\n")
        before = asyncio.run(audit_count(db_name, "broker_credentials.accessed"))
        common = {"seconds": options.seconds, "threads": 2, "connections": options.wrk_connections}
        results = interleaved(
            options.rounds,
            {
                "live": lambda: run_wrk(base, "/healthz/live", live_lua, args=[], **common),
                "access": lambda: run_wrk(
                    base, "/", access_lua, args=[str(paths_file), str(token_file)], **common
                ),
            },
        )
        live, accesses = combined(results["live"]), combined(results["access"])
        audited = asyncio.run(audit_count(db_name, "broker_credentials.accessed")) - before
        served = accesses.requests - accesses.errors
        ok = accesses.rps >= TARGET_ACCESSES and accesses.errors == 0 and audited >= served
        lines = [
            f"Vault benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}; "
            f"{options.rounds} rounds of {options.seconds:g} s each, "
            f"wrk {options.wrk_connections} connections, "
            f"{options.connections} broker connections, 2 granian workers, PostgreSQL + Redis.",
            "",
            "| request | req/s | p50 ms | p99 ms | errors |",
            "|---|---|---|---|---|",
            row("GET /healthz/live (vault ceiling)", live),
            row("POST /vault/v1/broker-connections/{id}/access", accesses),
            "",
            f"Accesses/s: {accesses.rps:,.0f} "
            f"(target >= {TARGET_ACCESSES:,.0f}: {'met' if ok else 'NOT met'}); "
            f"{accesses.rps / live.rps:.2f}x the ceiling; audit entries written: {audited:,} for {served:,} "
            f"answers.",
        ]
        report = "\n".join(lines)
        print(report)
        results_dir = BENCH_DIR / "results"
        results_dir.mkdir(exist_ok=True)
        (results_dir / "vault.md").write_text(report + "\n")
        return 0 if ok else 1
    finally:
        if process is not None:
            stop_process_group(process)
        asyncio.run(drop_database(db_name))
        for key in redis_client.scan_iter(match="bulwark:vault-access:*"):
            redis_client.delete(key)


if __name__ == "__main__":
    sys.exit(main())
