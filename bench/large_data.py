"""The service on production-sized data against the same service on small data, side by side.

Run: .venv/bin/python bench/large_data.py [--factor 1] [--large-db NAME] [--seconds 10] [--rounds 3]

Two databases on the same PostgreSQL: a small one (only the benchmark's own users, an empty audit
log) and a large one filled by bench/seed_large.py (at --factor 1: 1 M users, 200 k orgs, 3 M
memberships, 5 M sessions, 20 M audit entries over two years), or an existing seeded one named
by --large-db (kept afterwards unless --drop-large). Each is migrated as the tables' owner and
served by its own `bulwark serve` (BULWARK_ENV=production, granian, 2 workers) as the unprivileged
service role, so row-level security applies, as in production. The same users are registered
through the API on both; then, in alternating slices so that both servers meet the same machine
state (a shared VM's speed drifts by tens of per cent within a minute):

- GET /api/v1/me and POST /api/v1/authz/check (bearer tokens of many sessions, 64 connections);
- GET /api/v1/orgs/{org}/audit, a page of 50 newest first, plain and filtered by action: on the
  small side the user's own org (renamed 60 times through the API, so both sides return a full
  page), on the large side seeded org 0, the one with the longest history (about 200,000 entries
  at factor 1), which the user is made an administrator of;
- POST /api/v1/auth/refresh on rotating session chains (each slice its own chains);
- POST /api/v1/auth/login flat out (argon2id-bound: what data size could change is the lookups
  around the hash).

Each figure is reported as large / small; the target is >= 0.85 (within 15 %). Results are printed
as a markdown table and written to bench/results/large_data.md."""

import argparse
import asyncio
import base64
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis
from aiosmtpd.controller import Controller

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(ROOT / "src"))

import seed_large  # noqa: E402
from login_load import login_requests, steady_logins  # noqa: E402
from run import (  # noqa: E402  (bench/ sibling: the same wrk driver, database and server helpers)
    FRONTEND,
    LUA_PACED,
    LUA_REFRESH,
    SERVICE_ROLE,
    UNLIMITED,
    ForeignLoad,
    MailSink,
    WrkResult,
    combined,
    create_database,
    drop_database,
    free_port,
    grant_service_role,
    interleaved,
    machine,
    migrate,
    report_server_log,
    run_wrk,
    seed,
    server,
    settle,
    write_lua,
)

from adapters.keys.keyring import generate_keyring, save_keyring  # noqa: E402

TARGET_RATIO = 0.85  # within 15 % of the small-data figure
REDIS_DBS = {"small": 13, "large": 14}  # one Redis database each: the service's namespace is fixed
LOGIN_CONNECTIONS = 16
LOGIN_WINDOWS = 4  # per side, alternating
REFRESH_CHAINS = 16
POOL_SIZE = 5
SMALL_ORG_RENAMES = 60  # org.updated entries: a full page of 50, plain and filtered
# The filtered search: on the small side the renames (no entry to skip); on the large side one of
# ten seeded actions (about nine entries skipped for each one returned).
FILTERED_ACTION = {"small": "org.updated", "large": "member.removed"}


class BothServers(ForeignLoad):
    """ForeignLoad that counts the processes of either server's session as the benchmark's."""

    def __init__(self, sessions: set[int]) -> None:
        super().__init__(server_session=-1)
        self.sessions = sessions

    def _known(self) -> float:
        total = 0.0
        for session in self.sessions:
            self.server_session = session
            total += super()._known()
        # Each call also counted postgres, redis and this process: keep them once.
        self.server_session = -1
        return total - (len(self.sessions) - 1) * super()._known()


@dataclass
class Side:
    name: str
    db_name: str
    owner_dsn: str
    base: str = ""
    accounts: list[tuple[str, str]] | None = None
    tokens_file: Path | None = None
    cookie_files: list[Path] | None = None
    audit_file: Path | None = None
    audit_org: str = ""


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


def audit_session(side: Side, workdir: Path) -> None:
    """A session of its own for the audit search: on the large side switched into org 0."""
    assert side.accounts
    address, password = side.accounts[0]
    with httpx.Client(base_url=side.base, headers={"origin": FRONTEND}, timeout=30) as client:
        r = client.post("/api/v1/auth/login", json={"email": address, "password": password})
        r.raise_for_status()
        token = r.json()["access_token"]
        org = str(claims(token)["org"])
        if side.name == "large":
            org = asyncio.run(seed_large.join_org_0(side.owner_dsn, str(claims(token)["sub"])))
            r = client.post(
                "/api/v1/auth/switch-org", json={"org_id": org}, headers={"authorization": f"Bearer {token}"}
            )
            if r.status_code != 200:
                raise RuntimeError(f"switch to org 0: {r.status_code} {r.text}")
            token = r.json()["access_token"]
        else:
            # A full page on the small side too (the same 50 entries to read and render): the org's
            # own history, made through the API.
            for n in range(SMALL_ORG_RENAMES):
                r = client.patch(
                    f"/api/v1/orgs/{org}",
                    json={"name": f"Bench desk {n}"},
                    headers={"authorization": f"Bearer {token}"},
                )
                if r.status_code != 200:
                    raise RuntimeError(f"rename the org: {r.status_code} {r.text}")
        r = client.get(f"/api/v1/orgs/{org}/audit", headers={"authorization": f"Bearer {token}"})
        if r.status_code != 200 or len(r.json()["entries"]) != 50:
            raise RuntimeError(f"audit search: {r.status_code} {r.text[:300]}")
    side.audit_org = org
    side.audit_file = workdir / f"audit-{side.name}.txt"
    side.audit_file.write_text(token + "\n")


def split(items: list[str], parts: int, size: int) -> Iterator[list[str]]:
    for n in range(parts):
        chunk = items[n * size : (n + 1) * size]
        if len(chunk) < size:
            raise RuntimeError(f"not enough sessions for {parts} refresh slices of {size} chains")
        yield chunk


async def table_sizes(owner_dsn: str) -> str:
    conn = await asyncpg.connect(owner_dsn)
    try:
        rows = await conn.fetch(
            "SELECT relname, reltuples::bigint AS n FROM pg_class WHERE relkind = 'r' AND relname = ANY($1) "
            "ORDER BY reltuples DESC",
            ["audit_events", "sessions", "refresh_tokens", "memberships", "users", "organisations"],
        )
        size = await conn.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
    finally:
        await conn.close()
    return ", ".join(f"{r['relname']} ~{r['n']:,}" for r in rows) + f"; {size} on disk"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per figure and side")
    parser.add_argument("--rounds", type=int, default=3, help="alternating slices per figure and side")
    parser.add_argument(
        "--users", type=int, default=48, help="accounts registered on each side (2 sessions each)"
    )
    parser.add_argument(
        "--factor", type=float, default=1.0, help="seed_large factor for a new large database"
    )
    parser.add_argument("--large-db", help="an existing database seeded by seed_large.py (migrated again)")
    parser.add_argument("--drop-large", action="store_true", help="drop --large-db at the end too")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench: wrk is required (apt-get install -y wrk)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="bulwark-large-"))
    keys_file = workdir / "keys.json"
    save_keyring(generate_keyring(generated=False), keys_file)
    sink = MailSink()
    smtp = Controller(sink, hostname="127.0.0.1", port=free_port())
    smtp.start()
    clients = {name: redis.Redis.from_url(f"redis://127.0.0.1:6379/{db}") for name, db in REDIS_DBS.items()}
    keys_before = {name: set(c.scan_iter(match="bulwark:*", count=1000)) for name, c in clients.items()}
    created: list[str] = []
    notes: list[str] = []
    try:
        small_name, _ = asyncio.run(create_database())
        created.append(small_name)
        if args.large_db:
            large_name = args.large_db
            if args.drop_large:
                created.append(large_name)
        else:
            large_name, _ = asyncio.run(create_database())
            created.append(large_name)
        sides = {
            "small": Side("small", small_name, f"postgresql://postgres@127.0.0.1:5432/{small_name}"),
            "large": Side("large", large_name, f"postgresql://postgres@127.0.0.1:5432/{large_name}"),
        }
        envs: dict[str, dict[str, str]] = {}
        for name, side in sides.items():
            port = free_port()
            side.base = f"http://127.0.0.1:{port}"
            bulwark_env = {
                "BULWARK_ENV": "production",
                "BULWARK_HOST": "127.0.0.1",
                "BULWARK_PORT": str(port),
                "BULWARK_WORKERS": "2",
                # Two servers of two workers on one shared PostgreSQL (max_connections 100 here):
                # 5 (+5 overflow) a worker keeps both within it, as production sizes its pools.
                "BULWARK_DATABASE_POOL_SIZE": str(POOL_SIZE),
                "BULWARK_DATA_DIR": str(workdir / f"data-{name}"),
                "BULWARK_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{side.db_name}",
                "BULWARK_REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DBS[name]}",
                "BULWARK_KEYS_FILE": str(keys_file),
                "BULWARK_FRONTEND_URL": FRONTEND,
                "BULWARK_SMTP_HOST": "127.0.0.1",
                "BULWARK_SMTP_PORT": str(smtp.port),
                "BULWARK_SMTP_STARTTLS": "false",
                "BULWARK_LOGIN_LIMIT_PER_IP": UNLIMITED,
                "BULWARK_LOGIN_LIMIT_PER_ACCOUNT": UNLIMITED,
                "BULWARK_REGISTER_LIMIT_PER_IP": UNLIMITED,
            }
            env = {k: v for k, v in os.environ.items() if not k.startswith("BULWARK_")} | bulwark_env
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])
            )
            started = time.monotonic()
            migrate(env, workdir)  # on an existing large database: migration 0015's indexes, concurrently
            print(f"bench: {name}: migrated in {time.monotonic() - started:.0f}s", flush=True)
            if name == "large" and not args.large_db:
                started = time.monotonic()
                asyncio.run(
                    seed_large.seed(side.owner_dsn, args.factor, log=lambda line: print(line, flush=True))
                )
                notes.append(f"seeded at factor {args.factor} in {time.monotonic() - started:.0f} s")
            grant_service_role(env, workdir)
            env["BULWARK_DATABASE_URL"] = env["BULWARK_DATABASE_URL"].replace(
                "postgres@", f"{SERVICE_ROLE}@", 1
            )
            envs[name] = env

        scripts = {
            # The paced script with no pause: like the plain one, but it reports non-2xx answers.
            "bearer": write_lua(workdir, "bearer", LUA_PACED),
            "refresh": write_lua(workdir, "refresh", LUA_REFRESH),
        }
        rows: list[tuple[str, float, float, str]] = []
        with ExitStack() as stack:
            processes = {}
            for name, side in sides.items():
                processes[name] = stack.enter_context(
                    server(envs[name], workdir, workdir / f"server-{name}.log", side.base)
                )
            load = BothServers({p.pid for p in processes.values()})
            for name, side in sides.items():
                seeded = asyncio.run(seed(side.base, sink, args.users, 2))
                side.accounts = seeded.accounts
                side.tokens_file = workdir / f"tokens-{name}.txt"
                side.tokens_file.write_text("\n".join(seeded.access_tokens) + "\n")
                side.cookie_files = []
                for n, chunk in enumerate(split(seeded.refresh_cookies, args.rounds, REFRESH_CHAINS)):
                    path = workdir / f"cookies-{name}-{n}.txt"
                    path.write_text("\n".join(chunk) + "\n")
                    side.cookie_files.append(path)
                audit_session(side, workdir)
                print(
                    f"bench: {name}: seeded {len(seeded.accounts)} users; audit org {side.audit_org}",
                    flush=True,
                )

            for side in sides.values():
                asyncio.run(_analyze(side.owner_dsn))  # fresh statistics on both, whoever seeded them
            sizes = {name: asyncio.run(table_sizes(side.owner_dsn)) for name, side in sides.items()}
            for name, text in sizes.items():
                print(f"bench: {name}: {text}", flush=True)
            sliced = {"seconds": max(2, -(-args.seconds // args.rounds)), "threads": 2, "connections": 64}
            authz_body = json.dumps({"permission": "orders:create"})

            def bearer_phase(
                side: Side, path: str, method: str = "GET", body: str = "", tokens: Path | None = None
            ) -> Any:
                token_file = tokens or side.tokens_file
                return lambda: run_wrk(
                    side.base,
                    path,
                    scripts["bearer"],
                    args=[str(token_file), path, method, body, "0"],
                    **sliced,
                )

            # Warm every worker of both servers.
            for side in sides.values():
                for path, method, body in (
                    ("/api/v1/me", "GET", ""),
                    ("/api/v1/authz/check", "POST", authz_body),
                ):
                    run_wrk(
                        side.base,
                        path,
                        scripts["bearer"],
                        seconds=2,
                        threads=2,
                        connections=16,
                        args=[str(side.tokens_file), path, method, body, "0"],
                    )
            phases: dict[str, Any] = {}
            for name, side in sides.items():
                audit = f"/api/v1/orgs/{side.audit_org}/audit?limit=50"
                filtered = f"/api/v1/orgs/{side.audit_org}/audit?limit=50&action={FILTERED_ACTION[name]}"
                phases[f"me {name}"] = bearer_phase(side, "/api/v1/me")
                phases[f"authz {name}"] = bearer_phase(side, "/api/v1/authz/check", "POST", authz_body)
                phases[f"audit {name}"] = bearer_phase(side, audit, tokens=side.audit_file)
                phases[f"audit filtered {name}"] = bearer_phase(side, filtered, tokens=side.audit_file)
            since = load.start()
            results = {name: combined(slices) for name, slices in interleaved(args.rounds, phases).items()}
            foreign = load.percent(since)
            for label, key in (
                ("GET /api/v1/me", "me"),
                ("POST /api/v1/authz/check", "authz"),
                ("GET /api/v1/orgs/{org}/audit (50 newest)", "audit"),
                (
                    "GET /api/v1/orgs/{org}/audit?action=... (50 newest of one action: "
                    f"{FILTERED_ACTION['small']} / {FILTERED_ACTION['large']})",
                    "audit filtered",
                ),
            ):
                small, large = results[f"{key} small"], results[f"{key} large"]
                rows.append(
                    (
                        label,
                        small.rps,
                        large.rps,
                        f"p99 {small.p99_ms:.0f} / {large.p99_ms:.0f} ms{_errors(small, large)}",
                    )
                )
                print(f"bench: {label}: small {small.rps:,.0f}/s, large {large.rps:,.0f}/s", flush=True)

            refresh_slices: dict[str, list[WrkResult]] = {"small": [], "large": []}
            for n in range(args.rounds):
                for name, side in sides.items():
                    assert side.cookie_files
                    refresh_slices[name].append(
                        run_wrk(
                            side.base,
                            "/api/v1/auth/refresh",
                            scripts["refresh"],
                            seconds=sliced["seconds"],
                            threads=REFRESH_CHAINS,
                            connections=REFRESH_CHAINS,
                            args=[str(side.cookie_files[n])],
                        )
                    )
            small, large = combined(refresh_slices["small"]), combined(refresh_slices["large"])
            rows.append(
                (
                    f"POST /api/v1/auth/refresh ({REFRESH_CHAINS} rotating chains)",
                    small.rps,
                    large.rps,
                    f"p99 {small.p99_ms:.0f} / {large.p99_ms:.0f} ms{_errors(small, large)}",
                )
            )
            print(f"bench: refresh: small {small.rps:,.0f}/s, large {large.rps:,.0f}/s", flush=True)

            window = args.seconds * 1.5 / LOGIN_WINDOWS
            logins: dict[str, list[Any]] = {"small": [], "large": []}
            requests = {
                name: login_requests(side.base, FRONTEND, side.accounts or []) for name, side in sides.items()
            }
            for _ in range(LOGIN_WINDOWS):
                for name, side in sides.items():
                    settle()
                    logins[name].append(
                        steady_logins(
                            side.base,
                            requests[name],
                            connections=LOGIN_CONNECTIONS,
                            warmup=0.5,
                            seconds=window,
                        )
                    )
            rates = {
                name: sum(w.succeeded for w in windows) / sum(w.seconds for w in windows)
                for name, windows in logins.items()
            }
            failed = {name: sum(w.failed for w in windows) for name, windows in logins.items()}
            rows.append(
                (
                    f"POST /api/v1/auth/login ({LOGIN_CONNECTIONS} connections, argon2id-bound)",
                    rates["small"],
                    rates["large"],
                    f"failed {failed['small']} / {failed['large']}",
                )
            )
            print(f"bench: login: small {rates['small']:.1f}/s, large {rates['large']:.1f}/s", flush=True)
            foreign_all = load.percent(since)

        for name in sides:
            print(f"bench: {name} server's log:", flush=True)
            report_server_log(workdir / f"server-{name}.log")
            if os.environ.get("BENCH_KEEP_LOGS"):
                shutil.copy(
                    workdir / f"server-{name}.log", Path(os.environ["BENCH_KEEP_LOGS"]) / f"{name}.log"
                )
        date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        lines = [
            f"Bulwark on production-sized data, {date}",
            f"Machine: {machine()} (shared with other work); granian 2 workers per server, "
            "BULWARK_ENV=production, served as an unprivileged role (row-level security on); PostgreSQL + "
            f"Redis on loopback; small and large side by side in {args.rounds} alternating slices of "
            f"{sliced['seconds']} s per figure.",
            f"Small: {sizes['small']}.",
            f"Large: {sizes['large']}{'; ' + '; '.join(notes) if notes else ''}.",
            "",
            "| measurement | small data | large data | large / small | target | verdict | notes |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, small_rps, large_rps, note in rows:
            ratio = large_rps / small_rps if small_rps else 0.0
            verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
            fmt = ".1f" if small_rps < 100 else ",.0f"
            lines.append(
                f"| {label} | {small_rps:{fmt}}/s | {large_rps:{fmt}}/s | {ratio:.2f} | >= {TARGET_RATIO} "
                f"| {verdict} | {note} |"
            )
        lines += [
            "",
            f"Other load on the machine meanwhile (CPU share of processes outside the benchmark): "
            f"{foreign:.0f}% during the interleaved figures, {foreign_all:.0f}% overall.",
        ]
        report = "\n".join(lines)
        print()
        print(report)
        results_dir = BENCH_DIR / "results"
        results_dir.mkdir(exist_ok=True)
        (results_dir / "large_data.md").write_text(report + "\n")
        return 0
    finally:
        smtp.stop()
        for name in created:
            asyncio.run(drop_database(name))
        for name, client in clients.items():
            new = set(client.scan_iter(match="bulwark:*", count=1000)) - keys_before[name]
            if new:
                client.delete(*new)
            client.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _errors(small: WrkResult, large: WrkResult) -> str:
    if not small.errors and not large.errors:
        return ""
    return f"; errors {small.errors} / {large.errors} (non-2xx {small.status_errors} / {large.status_errors})"


async def _analyze(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


if __name__ == "__main__":
    sys.exit(main())
