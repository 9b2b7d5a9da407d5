"""Servers a test may kill: a private PostgreSQL cluster, a private Redis, and `bulwark serve`
(granian, production settings) against them.

The shared PostgreSQL (5432) and Redis (6379) belong to everyone's tests and are never touched
here: each `PrivatePostgres` is its own cluster (initdb in a temp dir, a free port, trust auth on
loopback), each `PrivateRedis` its own `redis-server` without persistence, so a restart brings it
back EMPTY -- the worst case a deployment without AOF meets. Reusable by any suite that needs to
restart, kill or multiply servers (the fault suite, several instances behind nginx)."""

import contextlib
import email
import email.policy
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from aiosmtpd.controller import Controller

from adapters.keys.keyring import generate_keyring, save_keyring

BULWARK = Path(sys.executable).parent / "bulwark"
FRONTEND = "https://app.faults.invalid"
COOKIE = "__Secure-bulwark_refresh"  # the production cookie name
PASSWORD = "fault suite passphrase 42 horse"
IN_CI = os.environ.get("CI", "").lower() == "true"


class EngineMissing(RuntimeError):
    """A server binary is not installed (a skip locally, a failure under CI=true)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(interval)
    raise TimeoutError(f"{what} not within {timeout:.0f}s")


# -- PostgreSQL ------------------------------------------------------------------------------------


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    if which:
        return Path(which).parent
    raise EngineMissing("PostgreSQL server binaries (pg_ctl, initdb) are not installed")


class PrivatePostgres:
    """A PostgreSQL cluster of its own. As root the server runs as the `postgres` user (PostgreSQL
    refuses to run as root); its data directory lives in a fresh temp dir owned by that user."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="bulwark-fault-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}\n{self._log_tail()}")

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text()[-2000:]
        return ""

    def init(self) -> None:
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync"
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=300 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-o", options, "start"
        )

    def stop(self, mode: str = "fast") -> None:
        """`fast` ends every session at once (what a restart does to the service's connections)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Synchronous (psql), so it also serves callers inside a running event loop."""
        done = subprocess.run(
            [
                str(self.bin / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                f'CREATE DATABASE "{name}"',
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode != 0:
            raise RuntimeError(f"CREATE DATABASE {name} failed: {done.stderr}")
        return self.url(name)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.destroy()


# -- Redis -----------------------------------------------------------------------------------------


class PrivateRedis:
    """`redis-server` on a port of its own, without RDB or AOF: killed and started again it comes
    back empty."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise EngineMissing("redis-server is not installed")
        self.binary = binary
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="bulwark-fault-redis-"))
        self.log = self.root / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.root),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self.answers, 10, "redis-server")

    def answers(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no save; every client connection drops."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def destroy(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


# -- mail ------------------------------------------------------------------------------------------


class MailSink:
    """An SMTP server on loopback keeping the text of every message by recipient."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[str]] = {}
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    @property
    def port(self) -> int:
        return int(self.controller.port)

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


@contextlib.contextmanager
def mail_sink() -> Iterator[MailSink]:
    sink = MailSink()
    sink.controller.start()
    try:
        yield sink
    finally:
        sink.controller.stop()


# -- bulwark serve ---------------------------------------------------------------------------------


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULWARK_")}
    env.update(extra)
    src = Path(__file__).resolve().parent.parent / "src"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))
    return env


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in Path(task).read_text().split()]
    return found


def socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    for fd in glob.glob(f"/proc/{pid}/fd/*"):
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def inode_of_tcp_connection(local_port: int, remote_port: int) -> str | None:
    """The socket inode of the server side of a loopback connection (remote = the client)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                local, remote, inode = parts[1], parts[2], parts[9]
                if (
                    int(local.rsplit(":", 1)[1], 16) == local_port
                    and int(remote.rsplit(":", 1)[1], 16) == remote_port
                ):
                    return inode
    return None


@dataclass
class BulwarkServer:
    """`bulwark serve` in a process group of its own (stopping it reaches granian's workers)."""

    base: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]
    workdir: Path
    sink: MailSink
    extra: dict[str, Any] = field(default_factory=dict)

    def workers(self) -> list[int]:
        return children_of(self.process.pid)

    def worker_holding(self, client_port: int) -> int | None:
        """The worker serving the client connection from `client_port` (to kill that one)."""
        inode = inode_of_tcp_connection(self.port, client_port)
        if inode is None:
            return None
        for pid in self.workers():
            if inode in socket_inodes(pid):
                return pid
        return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BULWARK), *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"bulwark serve exited ({self.process.returncode}):\n{self.log()[-4000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/healthz/ready", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"bulwark serve not ready after {timeout:.0f}s:\n{self.log()[-4000:]}")

    def wait_workers(self, count: int, timeout: float = 30) -> list[int]:
        wait_for(lambda: len(self.workers()) == count, timeout, f"{count} granian workers")
        return self.workers()

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, sig)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


def production_env(
    workdir: Path, port: int, database_url: str, redis_url: str, sink: MailSink, **settings: str
) -> dict[str, str]:
    """Production settings (real keys, SMTP, Redis, PostgreSQL); `settings` are extra BULWARK_*
    values by their lower-case name without the prefix (login_limit_per_account="5/60")."""
    keys_file = workdir / "keys.json"
    if not keys_file.exists():
        save_keyring(generate_keyring(generated=False), keys_file)
    values = {
        "BULWARK_ENV": "production",
        "BULWARK_HOST": "127.0.0.1",
        "BULWARK_PORT": str(port),
        "BULWARK_WORKERS": "2",
        "BULWARK_DATA_DIR": str(workdir / "data"),
        "BULWARK_DATABASE_URL": database_url,
        "BULWARK_REDIS_URL": redis_url,
        "BULWARK_KEYS_FILE": str(keys_file),
        "BULWARK_FRONTEND_URL": FRONTEND,
        "BULWARK_SMTP_HOST": "127.0.0.1",
        "BULWARK_SMTP_PORT": str(sink.port),
        "BULWARK_SMTP_STARTTLS": "false",  # loopback sink
        "BULWARK_ARGON2_MEMORY_KIB": "19456",  # OWASP's floor: logins stay cheap on 2 cores
        "BULWARK_LOG_JSON": "false",
    }
    values.update({f"BULWARK_{name.upper()}": value for name, value in settings.items()})
    return clean_env(values)


def start_bulwark(
    workdir: Path, database_url: str, redis_url: str, sink: MailSink, *, migrate: bool = True, **settings: str
) -> BulwarkServer:
    """Migrates the database (as its owner) and starts `bulwark serve`; waits until it is ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = production_env(workdir, port, database_url, redis_url, sink, **settings)
    log_path = workdir / f"serve-{port}.log"
    if migrate:
        done = subprocess.run(
            [str(BULWARK), "db", "upgrade"], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"bulwark db upgrade failed:\n{done.stdout}{done.stderr}")
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(BULWARK), "serve"],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = BulwarkServer(f"http://127.0.0.1:{port}", port, process, log_path, env, workdir, sink)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


# -- accounts through the API ----------------------------------------------------------------------


def refresh_cookie_of(response: httpx.Response) -> str | None:
    for header in response.headers.get_list("set-cookie"):
        match = re.match(rf"{re.escape(COOKIE)}=([^;]*)", header)
        if match and match.group(1):
            return match.group(1)
    return None


def with_cookie(refresh_token: str) -> dict[str, str]:
    return {"cookie": f"{COOKIE}={refresh_token}"}


def bearer(access_token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {access_token}"}


def api_client(server: BulwarkServer, timeout: float = 30) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.base, headers={"origin": FRONTEND}, timeout=timeout)


async def register_verified(client: httpx.AsyncClient, sink: MailSink, address: str) -> None:
    r = await client.post(
        "/api/v1/auth/register", json={"email": address, "password": PASSWORD, "display_name": "Fault"}
    )
    assert r.status_code == 202, r.text
    token = sink.token_for(address, "verify-email")
    assert token is not None, f"no verification mail for {address}"
    r = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert r.status_code == 200, r.text


@dataclass
class LoggedIn:
    access_token: str
    refresh_token: str
    session_id: str


async def login(client: httpx.AsyncClient, address: str) -> LoggedIn:
    r = await client.post("/api/v1/auth/login", json={"email": address, "password": PASSWORD})
    assert r.status_code == 200, r.text
    cookie = refresh_cookie_of(r)
    assert cookie is not None, r.headers
    # The claims only (the server verified them): the session id names what to look up.
    claims = jwt.decode(r.json()["access_token"], options={"verify_signature": False})
    return LoggedIn(r.json()["access_token"], cookie, str(claims["sid"]))
