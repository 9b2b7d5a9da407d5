"""Several `bulwark serve` instances (real processes, several workers each) on one PostgreSQL and
one Redis, behind a real nginx (Debian's package) running the shipped round-robin config
(deploy/nginx/bulwark-instances.conf). Used by the multi-instance tests and bench/multi_instance.py.

Mail goes to an aiosmtpd server on loopback; `ClusterService` looks like the in-process test
service to the e2e helpers (a `.client` and a mailer with `.messages`), so the same steps that
register, invite and log in users drive the cluster over real sockets."""

import contextlib
import email
import email.policy
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from aiosmtpd.controller import Controller

from application.ports.mailer import MailMessage

ROOT = Path(__file__).resolve().parents[1]
NGINX_CONF = ROOT / "deploy" / "nginx" / "bulwark-instances.conf"
BULWARK = Path(sys.executable).parent / "bulwark"
FRONTEND = "https://app.example.com"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nginx_binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


class Inbox:
    """aiosmtpd handler keeping every message, readable as the e2e helpers' MailMessage."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    @property
    def messages(self) -> list[MailMessage]:
        found = []
        for envelope in list(self.envelopes):
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            body = message.get_body(preferencelist=("plain",))
            text = body.get_content() if body is not None else ""  # type: ignore[attr-defined]
            found.append(MailMessage(to=str(message["To"]), subject=str(message["Subject"]), body=text))
        return found


@dataclass
class ClusterService:
    """What the e2e helpers need of a service: a client (here: through nginx) and its mail."""

    client: httpx.AsyncClient
    container: Any


@dataclass
class Cluster:
    gateway: str  # nginx
    instances: list[str]  # each instance's own address, for "at A, then at B"
    env: dict[str, str]
    inbox: Inbox
    tmp: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def service(self, client: httpx.AsyncClient) -> ClusterService:
        return ClusterService(client, SimpleNamespace(mailer=self.inbox))

    def upstreams(self) -> list[str]:
        """The instance nginx handed each request to, in order (from its access log)."""
        log = self.tmp / "upstreams.log"
        return log.read_text().split() if log.exists() else []

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BULWARK), *args],
            cwd=self.tmp,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULWARK_")}
    env.update(extra)
    return env


def _wait_ready(url: str, process: subprocess.Popen[bytes] | None, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{url} exited:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never became ready:\n{log.read_text()}")


def _nginx_conf(tmp: Path, gateway_port: int, ports: list[int]) -> Path:
    shipped = NGINX_CONF.read_text()
    servers = "".join(f"    server 127.0.0.1:{p} max_fails=2 fail_timeout=5s;\n" for p in ports)
    lines = [
        line for line in shipped.splitlines(keepends=True) if not line.lstrip().startswith("server bulwark-")
    ]
    site = "".join(lines).replace("keepalive 64;", servers.lstrip() + "    keepalive 64;", 1)
    site = site.replace("listen 8080;", f"listen 127.0.0.1:{gateway_port};")
    (tmp / "bulwark-instances.conf").write_text(site)
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format upstream '$upstream_addr';
    access_log {tmp}/upstreams.log upstream;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    include {tmp}/bulwark-instances.conf;
}}
"""
    )
    return conf


@contextlib.contextmanager
def private_redis(tmp: Path) -> Iterator[str]:
    """A redis-server of the cluster's own: server processes use unprefixed keys and global
    pub/sub channels, which must not meet another run's."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        cwd=tmp,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def running_cluster(
    tmp: Path, database_url: str, redis_url: str, instances: int = 2, workers: int = 2, **settings: str
) -> Iterator[Cluster]:
    nginx = nginx_binary()
    assert nginx is not None, "nginx is not installed"
    inbox, smtp_port = Inbox(), free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port, server_hostname="mx.test")
    smtp.start()
    env = _clean_env(
        BULWARK_DATABASE_URL=database_url,
        BULWARK_REDIS_URL=redis_url,
        BULWARK_KEYS_FILE=str(tmp / "keys.json"),
        BULWARK_FRONTEND_URL=FRONTEND,
        BULWARK_SMTP_HOST="127.0.0.1",
        BULWARK_SMTP_PORT=str(smtp_port),
        BULWARK_SMTP_STARTTLS="false",
        BULWARK_TRUSTED_PROXIES="127.0.0.1/32",
        BULWARK_ADMIN_ALLOWED_NETWORKS="127.0.0.1/32",
        BULWARK_ARGON2_MEMORY_KIB="19456",
        BULWARK_LOG_LEVEL="WARNING",
        BULWARK_DATA_DIR=str(tmp / "data"),
        **{f"BULWARK_{k.upper()}": v for k, v in settings.items()},
    )
    cluster = Cluster("", [], env, inbox, tmp)
    try:
        for args in (["keys", "init", str(tmp / "keys.json")], ["db", "upgrade"]):
            done = cluster.cli(*args)
            assert done.returncode == 0, done.stderr
        ports = [free_port() for _ in range(instances)]
        for index, port in enumerate(ports):
            log = tmp / f"instance-{index}.log"
            instance_env = {**env, "BULWARK_DATA_DIR": str(tmp / f"data-{index}")}
            cluster.processes.append(
                subprocess.Popen(
                    [
                        str(BULWARK),
                        "serve",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--workers",
                        str(workers),
                    ],
                    cwd=tmp,
                    env=instance_env,
                    stdout=log.open("w"),
                    stderr=subprocess.STDOUT,
                )
            )
            cluster.instances.append(f"http://127.0.0.1:{port}")
        for index, url in enumerate(cluster.instances):
            _wait_ready(url, cluster.processes[index], tmp / f"instance-{index}.log")
        gateway_port = free_port()
        conf = _nginx_conf(tmp, gateway_port, ports)
        cluster.processes.append(
            subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp)], stderr=subprocess.DEVNULL)
        )
        cluster.gateway = f"http://127.0.0.1:{gateway_port}"
        _wait_ready(cluster.gateway, None, tmp / "nginx-error.log")
        yield cluster
    finally:
        for process in cluster.processes:
            process.terminate()
        for process in cluster.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        smtp.stop()


async def stale_for(
    instance: str,
    probe: Any,
    still_old: Any,
    since: float,
    deadline: float = 3.0,
    probes: int = 8,
) -> float:
    """Seconds after `since` during which `instance` still answered the old way (0: never)."""
    stale, _ = await settle(instance, probe, still_old, since, deadline, probes)
    return stale


async def settle(
    instance: str,
    probe: Any,
    still_old: Any,
    since: float,
    deadline: float = 3.0,
    probes: int = 8,
) -> tuple[float, float]:
    """(stale, bound): seconds after `since` during which `instance` still answered the old way
    (0: never), and when the first round of all-new answers after the last old one completed
    (an upper bound on the propagation, as fine as one round trip).

    Each round sends `probes` requests at once, each on a new connection, so every worker of the
    instance takes some of them; the answer is settled once three rounds in a row are all new.
    `probe(client)` sends one request; `still_old(response)` tells an answer from before the change."""
    import asyncio

    last_old = since
    first_new: float | None = None
    settled = 0
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=instance, limits=limits, headers={"origin": FRONTEND}) as client:
        while time.monotonic() - since < deadline:
            answers = await asyncio.gather(*(probe(client) for _ in range(probes)))
            if any(still_old(answer) for answer in answers):
                last_old, settled, first_new = time.monotonic(), 0, None
            else:
                settled += 1
                first_new = first_new or time.monotonic()
                if settled == 3:
                    return max(0.0, last_old - since), first_new - since
    raise AssertionError(f"{instance} still answered the old way {deadline} s after the change")
