"""End-to-end benchmark of Bulwark served like production, in one bounded run (~2-3 minutes).

Run: .venv/bin/python bench/run.py [--seconds 10] [--users 48] [--rounds 3]

It creates a throw-away PostgreSQL database, writes a real (non-generated) keyring, starts an SMTP
sink on loopback, runs `bulwark db upgrade` as the tables' owner and `bulwark serve` as an
unprivileged role subject to row-level security (BULWARK_ENV=production, granian with 2 workers,
Redis DB 15 under the service's fixed `bulwark` namespace), seeds verified users
through the API, then drives it with wrk (C, so the load generator takes little of the 2 cores):

- GET /healthz/live (the ceiling: middleware + routing, nothing else);
- GET /api/v1/me with bearer tokens of many sessions, round robin;
- POST /api/v1/authz/check when the endpoint exists (issue 5), skipped while it answers 404;
  these three in alternating slices (--rounds), so their ratios are taken under one machine
  state: a shared VM's speed drifts by tens of per cent within a minute;
- POST /api/v1/auth/refresh, each wrk connection carrying its own rotating session chain;
- POST /api/v1/auth/login flat out over many accounts, against the argon2id ceiling (hashes/s
  with the server's parameters on the same cores, one process per core like the server's
  workers, measured right before and right after the logins);
- the p99 of GET /api/v1/me (a light, paced probe) while logins run flat out.

Everything goes to 127.0.0.1. The server is stopped, the database dropped and the Redis keys this
run created deleted at the end, whatever happens. Results are printed as a markdown table and
written to bench/results/latest.md."""

import argparse
import asyncio
import contextlib
import email
import email.policy
import itertools
import json
import multiprocessing
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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

from argon2_params import one_hash, throughput  # noqa: E402  (bench/ sibling, same hashing as the server)
from login_load import LoginWindow, login_requests, steady_logins  # noqa: E402

from adapters.keys.keyring import generate_keyring, save_keyring  # noqa: E402
from adapters.passwords.hash_memory import keep_hash_memory  # noqa: E402
from entrypoints.settings import load_settings  # noqa: E402

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/15"  # a DB of its own: the service's namespace is fixed
REDIS_NAMESPACE = "bulwark"
SERVICE_ROLE = "bulwark_app_bench"  # what the server connects as (row-level security applies)
FRONTEND = "https://app.bench.invalid"
COOKIE = "__Secure-bulwark_refresh"  # production cookie name
UNLIMITED = "1000000/1"
# Enough logins in flight that both workers' argon2 pools stay busy however connections spread.
LOGIN_CONNECTIONS = 16  # rate limits stay on (and cost their Redis round trips), never trip
LOGIN_WARMUP = 0.5  # seconds before a login window opens: every worker's hashing queue is full
# Logins get 1.5x the time of other figures, in more windows: a login is ~90 ms of hashing, so a
# window holds few of them, and the ceiling slices around each drift with the VM.
LOGIN_WINDOWS = 5

# Targets from the issues: (label, comparison, threshold).
TARGET_ME_RATIO = 0.6
TARGET_LOGIN_RATIO = 0.9
TARGET_ME_P99_MS = 50.0
TARGET_REFRESH_PER_CORE = 480.0
TARGET_AUTHZ_RATIO = 0.5
TARGET_AUTHZ_RPS = 5000.0


# --- wrk scripts ----------------------------------------------------------------------------------

# Shared by every script: per-thread ids (setup runs in the main Lua state) and a JSON summary.
LUA_COMMON = r"""
local counter = 0
local threads = {}
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  threads[#threads + 1] = thread
end
local counts = {}
function note(status, body, kind)
  if status >= 300 or kind then
    local key = kind or tostring(status)
    counts[key] = (counts[key] or 0) + 1
    local parts = {}
    for code, n in pairs(counts) do parts[#parts + 1] = code .. "x" .. n end
    -- The latest body says why; `statuses` is read back in done().
    statuses = table.concat(parts, ",") .. " " .. body:sub(1, 160)
  end
end
function lines_of(path)
  local t = {}
  for line in io.lines(path) do if line ~= "" then t[#t + 1] = line end end
  return t
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50.0), latency:percentile(99.0), latency.max))
  for _, thread in ipairs(threads) do
    local seen = thread:get("statuses")
    if seen and seen ~= "" then io.write("WRKSTATUS " .. seen .. "\n") end
  end
end
"""

LUA_GET = ""  # a static request: wrk sends the same bytes every time

# args: tokens file, path, method, [json body], [delay ms]
LUA_BEARER = r"""
local tokens, i, path, method, body, pause
function init(args)
  tokens = lines_of(args[1])
  path, method = args[2], args[3]
  body = args[4] ~= "" and args[4] or nil
  pause = tonumber(args[5] or "0")
  i = (id * 7919) % #tokens
end
function request()
  i = i % #tokens + 1
  local headers = {["Authorization"] = "Bearer " .. tokens[i]}
  if body then
    -- Other services call POST /authz/check server to server: a bearer token, no Origin.
    headers["Content-Type"] = "application/json"
  end
  return wrk.format(method, path, headers, body)
end
"""
# Paced variant for the latency probe (wrk's delay() runs before every request).
LUA_PACED = (
    LUA_BEARER
    + r"""
function delay() return pause end
function response(status, headers, body) note(status, body) end
"""
)

# One connection per thread: response() of the previous request runs before request() of the next,
# so each thread follows its own rotation chain. args: cookies file.
LUA_REFRESH = r"""
local cookie
function init(args)
  local all = lines_of(args[1])
  cookie = all[id % #all + 1]
end
function request()
  return wrk.format("POST", "/api/v1/auth/refresh",
    {["Cookie"] = "__COOKIE__=" .. cookie, ["Origin"] = "__ORIGIN__"})
end
function response(status, headers, body)
  note(status, body)
  if status ~= 200 then return end
  -- Plain find: the cookie name holds '-', a Lua pattern operator.
  local set = headers["set-cookie"] or headers["Set-Cookie"] or ""
  local prefix = "__COOKIE__="
  local at = set:find(prefix, 1, true)
  local value = at and set:sub(at + #prefix):match("^[^;]*") or ""
  if value == "" or value == cookie then
    note(status, body, "200-without-a-new-cookie")  -- the chain would stop rotating: say so
  else
    cookie = value
  end
end
"""

# args: accounts file (email<TAB>password per line)
LUA_LOGIN = r"""
local bodies, i
function init(args)
  bodies = {}
  for _, line in ipairs(lines_of(args[1])) do
    local address, password = line:match("([^\t]+)\t(.+)")
    bodies[#bodies + 1] = string.format('{"email":"%s","password":"%s"}', address, password)
  end
  i = (id * 7919) % #bodies
end
function request()
  i = i % #bodies + 1
  return wrk.format("POST", "/api/v1/auth/login",
    {["Content-Type"] = "application/json", ["Origin"] = "__ORIGIN__"}, bodies[i])
end
"""


@dataclass
class WrkResult:
    requests: int
    seconds: float
    errors: int
    status_errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    anomalies: int = 0  # 2xx answers that were still wrong (a refresh without a new cookie)

    @property
    def rps(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0


def write_lua(directory: Path, name: str, body: str) -> Path:
    path = directory / f"{name}.lua"
    text = (LUA_COMMON + body).replace("__ORIGIN__", FRONTEND).replace("__COOKIE__", COOKIE)
    path.write_text(text)
    return path


def start_wrk(
    base: str, path: str, script: Path, *, seconds: float, threads: int, connections: int, args: list[str]
) -> subprocess.Popen[str]:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        base + path,
        "--",
        *args,
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish_wrk(process: subprocess.Popen[str]) -> WrkResult:
    output, _ = process.communicate(timeout=120)
    match = re.search(r"WRKJSON (\{.*\})", output)
    if process.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{output}")
    data = json.loads(match.group(1))
    anomalies = 0
    for line in re.findall(r"WRKSTATUS (.*)", output):
        print(f"bench: wrk saw unexpected answers: {line}", flush=True)
        anomalies += sum(int(n) for n in re.findall(r"200-without-a-new-cookiex(\d+)", line))
    errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=errors + anomalies,
        status_errors=data["status"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        anomalies=anomalies,
    )


def run_wrk(base: str, path: str, script: Path, **kwargs: Any) -> WrkResult:
    return finish_wrk(start_wrk(base, path, script, **kwargs))


def combined(slices: list[WrkResult]) -> WrkResult:
    """One figure from several slices of the same load: totals over the summed time; the worst
    slice's p99 and max, the median slice's p50."""
    return WrkResult(
        requests=sum(r.requests for r in slices),
        seconds=sum(r.seconds for r in slices),
        errors=sum(r.errors for r in slices),
        status_errors=sum(r.status_errors for r in slices),
        p50_ms=sorted(r.p50_ms for r in slices)[len(slices) // 2],
        p99_ms=max(r.p99_ms for r in slices),
        max_ms=max(r.max_ms for r in slices),
        anomalies=sum(r.anomalies for r in slices),
    )


def interleaved(rounds: int, phases: dict[str, Any]) -> dict[str, list[Any]]:
    """Runs each phase (a callable) once per round, in turn, so that figures compared as a ratio
    are taken under the same machine conditions: on a shared VM the speed drifts by tens of per
    cent within a minute, and one long phase after another would put that drift in the ratio."""
    results: dict[str, list[Any]] = {name: [] for name in phases}
    for _ in range(rounds):
        for name, phase in phases.items():
            results[name].append(phase())
    return results


# --- infrastructure -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MailSink:
    """SMTP server on loopback that keeps the decoded text of every message, by recipient."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[str]] = {}

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""  # type: ignore[attr-defined]
        for recipient in envelope.rcpt_tos:
            self.bodies.setdefault(recipient.lower(), []).append(text)
        return "250 OK"

    def token_for(self, address: str, kind: str) -> str | None:
        for text in reversed(self.bodies.get(address.lower(), [])):
            match = re.search(rf"/{kind}\?token=([A-Za-z0-9_-]+)", text)
            if match:
                return match.group(1)
        return None


async def create_database() -> tuple[str, str]:
    name = f"bulwark_bench_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def redis_keys(client: redis.Redis) -> set[bytes]:
    return set(client.scan_iter(match=f"{REDIS_NAMESPACE}:*", count=1000))


def bulwark_command() -> str:
    # The console script of the interpreter running this file; PYTHONPATH (set by main) makes it
    # import the checkout this script lives in.
    return str(Path(sys.executable).parent / "bulwark")


def run_bulwark(args: list[str], env: dict[str, str], workdir: Path) -> str:
    """One `bulwark` command to completion (its standard output); its output in the error when it fails."""
    done = subprocess.run([bulwark_command(), *args], env=env, cwd=workdir, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bulwark {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def migrate(env: dict[str, str], workdir: Path) -> None:
    run_bulwark(["db", "upgrade"], env, workdir)


def grant_service_role(env: dict[str, str], workdir: Path) -> None:
    """The service's own login role, as production runs it (`bulwark db grant-service-role`): no
    superuser, no BYPASSRLS, owner of nothing -- so row-level security applies to every query
    the benchmark makes it run. The role is cluster-wide and kept between runs; its privileges
    go with the dropped database."""
    run_bulwark(["db", "grant-service-role", SERVICE_ROLE], env, workdir)


@contextlib.contextmanager
def server(
    env: dict[str, str], workdir: Path, log_path: Path, base: str
) -> Iterator[subprocess.Popen[bytes]]:
    bulwark = bulwark_command()
    with log_path.open("wb") as log:
        # A session of its own, so stopping it reaches granian's workers and nothing else.
        process = subprocess.Popen(
            [bulwark, "serve"],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_ready(process, base, log_path)
            yield process
        finally:
            stop_process_group(process)


def wait_ready(process: subprocess.Popen[bytes], base: str, log_path: Path, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited ({process.returncode}):\n{log_path.read_text()[-4000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/healthz/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.25)
    raise RuntimeError(f"server not ready after {timeout:.0f}s:\n{log_path.read_text()[-4000:]}")


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


# --- the argon2 ceiling ---------------------------------------------------------------------------


def _hash_flat_out(setting: tuple[int, int, int], seconds: float, results: Any) -> None:
    keep_hash_memory(setting[0])  # as every server worker does
    # Untimed: a process's first hash also faults its 46 MiB in (about 35 ms more here), which
    # the server's long-lived hashing threads did long ago. Timed, it would lower a 1.5 s slice's
    # ceiling by about 2 %, and raise the login ratio by as much.
    one_hash(*setting)
    results.put(throughput(setting, 1, seconds))


def argon2_ceiling(setting: tuple[int, int, int], processes: int, seconds: float) -> float:
    """Hashes/s with `processes` processes hashing back to back, one thread each: the shape of
    the server (a process per core, hashing off its event loop), so the ceiling is what these
    cores can really hash (threads of one process share its address space and its page-fault
    locks, and hash a few per cent less)."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [
        context.Process(target=_hash_flat_out, args=(setting, seconds, results)) for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    total = sum(results.get(timeout=seconds + 60) for _ in workers)
    for worker in workers:
        worker.join()
    return float(total)


def machine_busy_seconds() -> float:
    """CPU seconds all processes have used since boot (/proc/stat, minus idle and iowait)."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def settle(timeout: float = 15.0) -> None:
    """Waits until the machine is nearly idle: after wrk stops, the server still finishes the
    requests it had in flight (for logins, a second of hashing), which a ceiling taken at once
    would have to share the cores with."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        start, began = machine_busy_seconds(), time.monotonic()
        time.sleep(0.25)
        used = machine_busy_seconds() - start
        if used / ((time.monotonic() - began) * (os.cpu_count() or 1)) < 0.1:
            return


# --- other load on the machine --------------------------------------------------------------------


class ForeignLoad:
    """How much of the CPUs went to processes that are not part of this benchmark during a phase:
    all busy time (/proc/stat) minus this script and its finished children (wrk), the server's
    session (granian and its workers), PostgreSQL and Redis. On a shared machine this says how far
    a figure can be trusted."""

    def __init__(self, server_session: int) -> None:
        self.server_session = server_session
        self.tick = os.sysconf("SC_CLK_TCK")

    def _known(self) -> float:
        ticks = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    text = stat.read()
            except OSError:
                continue
            comm = text[text.index("(") + 1 : text.rindex(")")]
            fields = text[text.rindex(")") + 2 :].split()
            if int(fields[3]) == self.server_session or comm in ("postgres", "redis-server"):
                ticks += int(fields[11]) + int(fields[12])
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ticks / self.tick + own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def start(self) -> tuple[float, float, float]:
        return time.monotonic(), machine_busy_seconds(), self._known()

    def percent(self, since: tuple[float, float, float]) -> float:
        """Share of all CPUs (0-100) used by foreign processes since `since`."""
        elapsed = time.monotonic() - since[0]
        foreign = (machine_busy_seconds() - since[1]) - (self._known() - since[2])
        return max(0.0, 100 * foreign / (elapsed * (os.cpu_count() or 1)))


# --- seeding --------------------------------------------------------------------------------------


@dataclass
class Seeded:
    accounts: list[tuple[str, str]]
    access_tokens: list[str]
    refresh_cookies: list[str]


def refresh_cookie_of(response: httpx.Response) -> str:
    for header in response.headers.get_list("set-cookie"):
        match = re.match(rf"{re.escape(COOKIE)}=([^;]+)", header)
        if match:
            return match.group(1)
    raise RuntimeError(f"no refresh cookie in the answer: {response.headers}")


async def seed(base: str, sink: MailSink, users: int, logins_per_user: int) -> Seeded:
    run_id = secrets.token_hex(4)
    accounts = [
        (f"bench-{run_id}-{n}@bench.invalid", f"Bench passphrase {secrets.token_urlsafe(12)} {n}")
        for n in range(users)
    ]
    limit = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=base, headers={"origin": FRONTEND}, timeout=30) as client:

        async def register(address: str, password: str) -> None:
            async with limit:
                r = await client.post(
                    "/api/v1/auth/register",
                    json={"email": address, "password": password, "display_name": "Bench"},
                )
                if r.status_code != 202:
                    raise RuntimeError(f"register {address}: {r.status_code} {r.text}")
                token = sink.token_for(address, "verify-email")
                if token is None:
                    raise RuntimeError(f"no verification mail for {address}")
                r = await client.post("/api/v1/auth/verify-email", json={"token": token})
                if r.status_code != 200:
                    raise RuntimeError(f"verify {address}: {r.status_code} {r.text}")

        async def login(address: str, password: str) -> tuple[str, str]:
            async with limit:
                r = await client.post("/api/v1/auth/login", json={"email": address, "password": password})
                if r.status_code != 200:
                    raise RuntimeError(f"login {address}: {r.status_code} {r.text}")
                return r.json()["access_token"], refresh_cookie_of(r)

        await asyncio.gather(*(register(a, p) for a, p in accounts))
        sessions = await asyncio.gather(*(login(a, p) for a, p in accounts for _ in range(logins_per_user)))
        probe = await client.get("/api/v1/me", headers={"authorization": f"Bearer {sessions[0][0]}"})
        if probe.status_code != 200:
            raise RuntimeError(f"/me with a fresh token: {probe.status_code} {probe.text}")
    return Seeded(accounts, [s[0] for s in sessions], [s[1] for s in sessions])


# --- report ---------------------------------------------------------------------------------------


def machine() -> str:
    memory_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model or platform.machine()}), {memory_kib / 1024 / 1024:.1f} GiB RAM"


@dataclass
class Row:
    measurement: str
    result: str
    target: str
    verdict: str
    foreign_percent: float | None

    def markdown(self) -> str:
        other = "" if self.foreign_percent is None else f"{self.foreign_percent:.0f}%"
        return f"| {self.measurement} | {self.result} | {self.target} | {self.verdict} | {other} |"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def errors_note(result: WrkResult) -> str:
    if not result.errors:
        return ""
    return f" ({result.errors} errors, {result.status_errors} of them non-2xx answers)"


async def report_revocations(db_name: str) -> None:
    """Nothing in the benchmark should end a session; if something did, say what and why."""
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{db_name}")
    try:
        rows = await conn.fetch(
            "SELECT revoked_reason, count(*) AS n FROM sessions WHERE revoked_at IS NOT NULL GROUP BY 1"
        )
        events = await conn.fetch("SELECT action, count(*) AS n FROM audit_events GROUP BY 1 ORDER BY 2 DESC")
    finally:
        await conn.close()
    for row in rows:
        print(
            f"bench: {row['n']} session(s) revoked during the run, reason {row['revoked_reason']}", flush=True
        )
    print("bench: audit events: " + ", ".join(f"{r['action']} {r['n']}" for r in events), flush=True)


def report_server_log(path: Path) -> None:
    """Warnings and errors the server logged during the run: they explain odd figures."""
    seen: dict[str, int] = {}
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("WARNING", "ERROR", "CRITICAL"):
            key = f"{entry['level']} {entry.get('logger', '')}: {str(entry.get('message', ''))[:200]}"
            seen[key] = seen.get(key, 0) + 1
    for key, count in sorted(seen.items(), key=lambda item: -item[1])[:10]:
        print(f"bench: server log, {count}x {key}", flush=True)


# --- main -----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each measurement")
    parser.add_argument("--users", type=int, default=48, help="seeded accounts (2 sessions each)")
    parser.add_argument("--workers", type=int, default=2, help="granian workers")
    parser.add_argument(
        "--rounds", type=int, default=3, help="slices per figure of a ratio, taken in turn with its ceiling"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench: wrk is required (apt-get install -y wrk)", file=sys.stderr)
        return 2

    seconds = args.seconds
    cores = os.cpu_count() or 1
    workdir = Path(tempfile.mkdtemp(prefix="bulwark-bench-"))
    rclient = redis.Redis.from_url(REDIS_URL)
    keys_before = redis_keys(rclient)
    db_name: str | None = None
    sink = MailSink()
    smtp = Controller(sink, hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        db_name, db_url = asyncio.run(create_database())
        keys_file = workdir / "keys.json"
        save_keyring(generate_keyring(generated=False), keys_file)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        bulwark_env = {
            "BULWARK_ENV": "production",
            "BULWARK_HOST": "127.0.0.1",
            "BULWARK_PORT": str(port),
            "BULWARK_WORKERS": str(args.workers),
            "BULWARK_DATA_DIR": str(workdir / "data"),
            "BULWARK_DATABASE_URL": db_url,
            "BULWARK_REDIS_URL": REDIS_URL,
            "BULWARK_KEYS_FILE": str(keys_file),
            "BULWARK_FRONTEND_URL": FRONTEND,
            "BULWARK_SMTP_HOST": "127.0.0.1",
            "BULWARK_SMTP_PORT": str(smtp.port),
            "BULWARK_SMTP_STARTTLS": "false",  # loopback sink; production proper keeps STARTTLS on
            "BULWARK_LOGIN_LIMIT_PER_IP": UNLIMITED,
            "BULWARK_LOGIN_LIMIT_PER_ACCOUNT": UNLIMITED,
            "BULWARK_REGISTER_LIMIT_PER_IP": UNLIMITED,
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("BULWARK_")} | bulwark_env
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
        settings = load_settings(bulwark_env, dotenv=workdir / "no.env")
        scripts = {
            name: write_lua(workdir, name, body)
            for name, body in (
                ("get", LUA_GET),
                ("bearer", LUA_BEARER),
                ("paced", LUA_PACED),
                ("refresh", LUA_REFRESH),
                ("login", LUA_LOGIN),
            )
        }

        print(f"bench: database {db_name}, redis {REDIS_URL}, server {base}, workdir {workdir}", flush=True)
        rows: list[Row] = []
        # Migrations as the tables' owner; the server as its own unprivileged role, as in production.
        migrate(env, workdir)
        grant_service_role(env, workdir)
        service_url = db_url.replace("postgres@", f"{SERVICE_ROLE}@", 1)
        env["BULWARK_DATABASE_URL"] = service_url
        with server(env, workdir, workdir / "server.log", base) as process:
            load = ForeignLoad(server_session=process.pid)
            started = time.monotonic()
            seeded = asyncio.run(seed(base, sink, args.users, 2))
            print(
                f"bench: seeded {len(seeded.accounts)} users, {len(seeded.access_tokens)} sessions "
                f"in {time.monotonic() - started:.1f}s",
                flush=True,
            )
            tokens_file = workdir / "tokens.txt"
            tokens_file.write_text("\n".join(seeded.access_tokens) + "\n")
            accounts_file = workdir / "accounts.txt"
            accounts_file.write_text("\n".join(f"{a}\t{p}" for a, p in seeded.accounts) + "\n")
            cookies_file = workdir / "cookies.txt"
            cookies_file.write_text("\n".join(seeded.refresh_cookies) + "\n")
            me_args = [str(tokens_file), "/api/v1/me", "GET", "", "0"]
            # Each figure of a ratio gets `seconds` in all, in `rounds` slices (wrk counts whole seconds).
            sliced = {"seconds": max(2, -(-seconds // args.rounds)), "threads": 2, "connections": 64}

            # Warm both workers (lazy imports, statement caches, pools) before the first figure.
            run_wrk(base, "/healthz/live", scripts["get"], seconds=2, threads=2, connections=16, args=[])
            run_wrk(base, "/api/v1/me", scripts["bearer"], seconds=2, threads=2, connections=16, args=me_args)

            # Issue 5's hot path; measured as soon as the endpoint exists.
            authz_body = json.dumps({"permission": "orders:create"})
            answer = httpx.post(
                base + "/api/v1/authz/check",
                content=authz_body,
                headers={
                    "authorization": f"Bearer {seeded.access_tokens[0]}",
                    "content-type": "application/json",
                    "origin": FRONTEND,
                },
            )
            authz_built = answer.status_code not in (404, 405)
            authz_args = [str(tokens_file), "/api/v1/authz/check", "POST", authz_body, "0"]

            # The ceiling and the figures compared with it, in alternating slices.
            phases: dict[str, Any] = {
                "live": lambda: run_wrk(base, "/healthz/live", scripts["get"], args=[], **sliced),
                "me": lambda: run_wrk(base, "/api/v1/me", scripts["bearer"], args=me_args, **sliced),
            }
            if authz_built:
                phases["authz"] = lambda: run_wrk(
                    base, "/api/v1/authz/check", scripts["bearer"], args=authz_args, **sliced
                )
            since = load.start()
            slices = {name: combined(results) for name, results in interleaved(args.rounds, phases).items()}
            foreign = load.percent(since)
            live, me = slices["live"], slices["me"]
            rows.append(
                Row(
                    "GET /healthz/live (ceiling)",
                    f"{live.rps:,.0f} req/s{errors_note(live)}",
                    "",
                    "",
                    foreign,
                )
            )
            print(f"bench: /healthz/live {live.rps:,.0f}/s", flush=True)
            rows.append(
                Row(
                    "GET /api/v1/me (bearer, 64 connections)",
                    f"{me.rps:,.0f} req/s = {me.rps / live.rps:.2f}x ceiling (p99 {me.p99_ms:.0f} ms)"
                    f"{errors_note(me)}",
                    f">= {TARGET_ME_RATIO}x ceiling",
                    verdict(me.rps >= TARGET_ME_RATIO * live.rps and me.errors == 0),
                    foreign,
                )
            )
            print(f"bench: /me {me.rps:,.0f}/s", flush=True)
            if not authz_built:
                rows.append(Row("POST /api/v1/authz/check", "not built yet (404)", "", "n/a", None))
            else:
                authz = slices["authz"]
                rows.append(
                    Row(
                        "POST /api/v1/authz/check",
                        f"{authz.rps:,.0f} req/s = {authz.rps / live.rps:.2f}x ceiling{errors_note(authz)}",
                        f">= {TARGET_AUTHZ_RATIO}x ceiling and >= {TARGET_AUTHZ_RPS:,.0f}/s",
                        verdict(
                            authz.rps >= TARGET_AUTHZ_RATIO * live.rps
                            and authz.rps >= TARGET_AUTHZ_RPS
                            and authz.errors == 0
                        ),
                        foreign,
                    )
                )
                print(f"bench: /authz/check {authz.rps:,.0f}/s", flush=True)

            chains = min(16, len(seeded.refresh_cookies))
            since = load.start()
            refresh = run_wrk(
                base,
                "/api/v1/auth/refresh",
                scripts["refresh"],
                seconds=seconds,
                threads=chains,
                connections=chains,
                args=[str(cookies_file)],
            )
            rows.append(
                Row(
                    f"POST /api/v1/auth/refresh ({chains} rotating session chains)",
                    f"{refresh.rps:,.0f} req/s = {refresh.rps / cores:,.0f}/core "
                    f"(p99 {refresh.p99_ms:.0f} ms)"
                    f"{errors_note(refresh)}",
                    f">= {TARGET_REFRESH_PER_CORE:.0f}/s per core ({TARGET_REFRESH_PER_CORE * cores:.0f}/s)",
                    verdict(refresh.rps >= TARGET_REFRESH_PER_CORE * cores and refresh.errors == 0),
                    load.percent(since),
                )
            )
            print(f"bench: refresh {refresh.rps:,.0f}/s{errors_note(refresh)}", flush=True)

            # Logins against the argon2 ceiling in alternating slices, every login window between
            # two ceiling slices, so that the VM's drift meets both figures alike. Logins are
            # counted in a steady-state window (see login_load).
            setting = (settings.argon2_memory_kib, settings.argon2_time_cost, settings.argon2_parallelism)
            requests = login_requests(base, FRONTEND, seeded.accounts)
            window = seconds * 1.5 / LOGIN_WINDOWS
            since = load.start()
            settle()
            ceilings = [argon2_ceiling(setting, cores, window / 2)]
            windows: list[LoginWindow] = []
            for _ in range(LOGIN_WINDOWS):
                windows.append(
                    steady_logins(
                        base, requests, connections=LOGIN_CONNECTIONS, warmup=LOGIN_WARMUP, seconds=window
                    )
                )
                settle()
                ceilings.append(argon2_ceiling(setting, cores, window / 2))
            foreign = load.percent(since)
            # Hashes the ceiling would have done in each window: the mean of the slices around it.
            possible = sum(
                w.seconds * (before + after) / 2
                for w, (before, after) in zip(windows, itertools.pairwise(ceilings), strict=True)
            )
            succeeded = sum(w.succeeded for w in windows)
            failed = sum(w.failed for w in windows)
            login_rps = succeeded / sum(w.seconds for w in windows)
            login_ratio = succeeded / possible
            ceiling = sum(ceilings) / len(ceilings)
            rows.append(
                Row(
                    f"argon2id ceiling (m={setting[0] // 1024} MiB, t={setting[1]}, p={setting[2]}; "
                    f"{cores} processes flat out, {len(ceilings)} slices around the logins)",
                    f"{ceiling:.1f} hashes/s ({min(ceilings):.1f}-{max(ceilings):.1f})",
                    "",
                    "",
                    foreign,
                )
            )
            slices = " / ".join(f"{c:.1f}" for c in ceilings)
            print(f"bench: argon2 ceiling {slices} hashes/s", flush=True)
            failures = f" ({failed} failed)" if failed else ""
            rows.append(
                Row(
                    f"POST /api/v1/auth/login ({LOGIN_CONNECTIONS} connections, "
                    f"{len(seeded.accounts)} accounts, {LOGIN_WINDOWS} windows of {window:.1f} s)",
                    f"{login_rps:.1f}/s = {login_ratio:.2f}x argon2 ceiling{failures}",
                    f">= {TARGET_LOGIN_RATIO}x argon2 ceiling",
                    verdict(login_ratio >= TARGET_LOGIN_RATIO and failed == 0),
                    foreign,
                )
            )
            print(f"bench: logins {login_rps:.1f}/s = {login_ratio:.3f}x{failures}", flush=True)

            # Logins flat out; /me probed lightly (2 connections, 10 ms apart) for its latency.
            since = load.start()
            storm = start_wrk(
                base,
                "/api/v1/auth/login",
                scripts["login"],
                seconds=seconds + 2,
                threads=2,
                connections=LOGIN_CONNECTIONS,
                args=[str(accounts_file)],
            )
            time.sleep(1.0)
            probe = run_wrk(
                base,
                "/api/v1/me",
                scripts["paced"],
                seconds=seconds,
                threads=1,
                connections=2,
                args=[str(tokens_file), "/api/v1/me", "GET", "", "10"],
            )
            storm_login = finish_wrk(storm)
            rows.append(
                Row(
                    "GET /api/v1/me p99 while logins run flat out",
                    f"{probe.p99_ms:.1f} ms (p50 {probe.p50_ms:.1f}, max {probe.max_ms:.1f}; "
                    f"{probe.rps:.0f} req/s probe, logins {storm_login.rps:.1f}/s){errors_note(probe)}",
                    f"<= {TARGET_ME_P99_MS:.0f} ms",
                    verdict(probe.p99_ms <= TARGET_ME_P99_MS and probe.errors == 0),
                    load.percent(since),
                )
            )
            print(f"bench: /me p99 under login storm {probe.p99_ms:.1f} ms{errors_note(probe)}", flush=True)

        report_server_log(workdir / "server.log")
        asyncio.run(report_revocations(db_name))
        date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        workers = args.workers
        lines = [
            f"Bulwark benchmark, {date}",
            f"Machine: {machine()}; Python {platform.python_version()}; granian {workers} workers, "
            f"BULWARK_ENV=production, served as an unprivileged role (row-level security on), PostgreSQL + "
            f"Redis on loopback; wrk load, {seconds:.0f} s per figure; the ceiling, /me and /authz/check "
            f"in {args.rounds} alternating slices of {sliced['seconds']} s each.",
            "",
            "| measurement | result | target | verdict | other load |",
            "|---|---|---|---|---|",
            *(row.markdown() for row in rows),
            "",
            "_other load_: share of the CPUs used meanwhile by processes outside the benchmark "
            "(not the server, PostgreSQL, Redis, wrk or this script); figures taken under load are low.",
        ]
        report = "\n".join(lines)
        print()
        print(report)
        results = BENCH_DIR / "results"
        results.mkdir(exist_ok=True)
        (results / "latest.md").write_text(report + "\n")
        return 0
    finally:
        smtp.stop()
        if db_name is not None:
            asyncio.run(drop_database(db_name))
        created = redis_keys(rclient) - keys_before
        if created:
            rclient.delete(*created)
        rclient.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
