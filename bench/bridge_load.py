"""Benchmark of the bridge API and forward-auth served like production (issue 17's figures).

Run: .venv/bin/python bench/bridge_load.py [--seconds 6] [--rounds 3] [--bridges 200]

A throw-away PostgreSQL database migrated by its owner, `bulwark serve` with BULWARK_ENV=production
and 2 granian workers as an unprivileged role under row-level security, Redis DB 15, a real
keyring. Bridges are seeded as rows with known keys (hashed as the service hashes them) and bound
by a real hello each. wrk then posts heartbeats round robin over the keys (each stored), and asks
`GET /api/v1/authz/forward` with the keys, in alternating slices with `/healthz/live` (the
ceiling). Bridge limits are raised so that they never trip. Prints a markdown table and writes
bench/results/bridges.md."""

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
from run import (  # bench/ sibling: the same wrk driver, database and server helpers
    LUA_COMMON,
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
    run_wrk,
    stop_process_group,
    wait_ready,
)
from seed_rows import org_with_owner

from adapters.keys.keyring import generate_keyring, save_keyring
from domain.bridges import key_prefix, make_key

BENCH_DIR = Path(__file__).resolve().parent
TARGET_RATIO = 0.5

LUA_KEYS = r"""
local keys, i, method, path, body
function init(args)
  keys = lines_of(args[1])
  method, path = args[2], args[3]
  body = args[4] ~= "" and args[4] or nil
  i = (id * 7919) % #keys
end
function request()
  i = i % #keys + 1
  local headers = {["X-API-Key"] = keys[i]}
  if body then headers["Content-Type"] = "application/json" end
  return wrk.format(method, path, headers, body)
end
function response(status, headers, body) note(status, body) end
"""
HEARTBEAT = json.dumps(
    {
        "sent_at": "2026-12-04T06:00:00Z",
        "connected": True,
        "trade_allowed": True,
        "balance": 10000.0,
        "equity": 10000.0,
        "margin": 0.0,
        "margin_free": 10000.0,
    },
    separators=(",", ":"),
)


async def seed(owner_url: str, bridge_key: bytes, count: int) -> list[str]:
    now = datetime.now(UTC)
    conn = await asyncpg.connect(owner_url.replace("postgresql+asyncpg", "postgresql"))
    keys: list[str] = []
    try:
        for n in range(count):
            bridge = uuid.uuid4()
            key = make_key(bridge, secrets.token_bytes(32))
            digest = hmac.new(bridge_key, key.encode(), hashlib.sha256).hexdigest()
            org, user = await org_with_owner(conn, n, now, "bridge")
            await conn.execute(
                "INSERT INTO bridges (id, org_id, name, created_by, created_at, key_hash, key_prefix, "
                "status, version) VALUES ($1, $2, 'bench EA', $3, $4, $5, $6, 'pending', 0)",
                bridge,
                org,
                user,
                now,
                digest,
                key_prefix(key),
            )
            keys.append(key)
    finally:
        await conn.close()
    return keys


def row(label: str, result: WrkResult, ceiling: WrkResult | None = None) -> str:
    ratio = f" = {result.rps / ceiling.rps:.2f}x ceiling" if ceiling else ""
    timing = f"{result.p50_ms:.1f} | {result.p99_ms:.1f}"
    return f"| {label} | {result.rps:,.0f}{ratio} | {timing} | {result.errors} |"


def verdict(result: WrkResult, ceiling: WrkResult) -> str:
    return "met" if result.rps >= TARGET_RATIO * ceiling.rps else "NOT met"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bridges", type=int, default=200)
    # 150,000 EAs are 150,000 clients: the load comes from many connections at once (the ceiling
    # is measured at the same concurrency, side by side).
    parser.add_argument("--wrk-connections", type=int, default=128)
    options = parser.parse_args()

    db_name, owner_url = asyncio.run(create_database())
    workdir = Path(tempfile.mkdtemp(prefix="bulwark-bridge-bench-"))
    process = None
    try:
        keyring = generate_keyring(generated=False)
        keyring_path = workdir / "keys.json"
        save_keyring(keyring, keyring_path)
        pepper = keyring.peppers[keyring.active_pepper_version]
        bridge_key = hmac.new(pepper, b"bridge-keys", hashlib.sha256).digest()  # as the composition root
        port = free_port()
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("BULWARK_")}
        base_env["PYTHONPATH"] = str(BENCH_DIR.parent / "src")
        owner_env = {**base_env, "BULWARK_DATABASE_URL": owner_url, "BULWARK_DATA_DIR": str(workdir)}
        migrate(owner_env, workdir)
        grant_service_role(owner_env, workdir)
        env = {
            **base_env,
            "BULWARK_ENV": "production",
            "BULWARK_DATABASE_URL": owner_url.replace("postgres@", f"{SERVICE_ROLE}@"),
            "BULWARK_REDIS_URL": REDIS_URL,
            "BULWARK_KEYS_FILE": str(keyring_path),
            "BULWARK_SMTP_HOST": "127.0.0.1",
            "BULWARK_SMTP_PORT": str(free_port()),
            "BULWARK_FRONTEND_URL": "https://app.bench.invalid",
            "BULWARK_PORT": str(port),
            "BULWARK_WORKERS": "2",
            "BULWARK_BRIDGE_LIMIT_PER_KEY": "1000000/1",
            "BULWARK_BRIDGE_LIMIT_PER_IP": "1000000/1",
            "BULWARK_DATA_DIR": str(workdir),
            "BULWARK_LOG_LEVEL": "WARNING",
        }
        keys = asyncio.run(seed(owner_url, bridge_key, options.bridges))
        base = f"http://127.0.0.1:{port}"
        log_path = workdir / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(Path(sys.executable).parent / "bulwark"), "serve"],
                env=env,
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_ready(process, base, log_path)
        hello = {
            "login": 5012345,
            "server": "Bench-Demo",
            "company": "Bench",
            "currency": "USD",
            "leverage": 100,
            "trade_mode": "demo",
            "terminal_build": 4755,
            "ea_version": "1.0",
        }
        with httpx.Client(base_url=base) as client:
            for key in keys:
                answer = client.post("/api/bridge/v1/hello", json=hello, headers={"X-API-Key": key})
                if answer.status_code != 200:
                    raise RuntimeError(f"hello refused: {answer.text}")
        keys_file = workdir / "keys.txt"
        keys_file.write_text("\n".join(keys) + "\n")
        lua = workdir / "keys.lua"
        lua.write_text(LUA_COMMON + LUA_KEYS)
        live_lua = workdir / "live.lua"
        live_lua.write_text(LUA_COMMON + "function response(status, headers, body) note(status, body) end\n")
        common = {"seconds": options.seconds, "threads": 2, "connections": options.wrk_connections}
        results = interleaved(
            options.rounds,
            {
                "live": lambda: run_wrk(base, "/healthz/live", live_lua, args=[], **common),
                "heartbeat": lambda: run_wrk(
                    base,
                    "/",
                    lua,
                    args=[str(keys_file), "POST", "/api/bridge/v1/heartbeat", HEARTBEAT],
                    **common,
                ),
                "forward": lambda: run_wrk(
                    base, "/", lua, args=[str(keys_file), "GET", "/api/v1/authz/forward", ""], **common
                ),
            },
        )
        live, beats, forward = (combined(results[k]) for k in ("live", "heartbeat", "forward"))
        lines = [
            f"Bridge benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}; "
            f"{options.rounds} rounds of {options.seconds:g} s, wrk {options.wrk_connections} connections, "
            f"{options.bridges} bridges, "
            "2 granian workers, PostgreSQL + Redis.",
            "",
            "| request | req/s | p50 ms | p99 ms | errors |",
            "|---|---|---|---|---|",
            row("GET /healthz/live (ceiling)", live),
            row("POST /api/bridge/v1/heartbeat (stored)", beats, live),
            row("GET /api/v1/authz/forward (bridge key)", forward, live),
            "",
            f"Heartbeats: {beats.rps:,.0f}/s = {beats.rps * 30:,.0f} bridges at one per 30 s "
            f"(target >= {TARGET_RATIO}x the ceiling: {verdict(beats, live)}); "
            f"forward-auth {verdict(forward, live)}.",
        ]
        report = "\n".join(lines)
        print(report)
        (BENCH_DIR / "results").mkdir(exist_ok=True)
        (BENCH_DIR / "results" / "bridges.md").write_text(report + "\n")
        return 0
    finally:
        if process is not None:
            stop_process_group(process)
        asyncio.run(drop_database(db_name))


if __name__ == "__main__":
    sys.exit(main())
