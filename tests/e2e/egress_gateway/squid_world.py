"""A real Squid (Debian's package) on loopback with the rendered squid.conf and Bulwark's helper,
a "broker" echo server that tells each connection the source address it came from, and workers
that CONNECT through Squid with an egress credential. Squid absent: skipped with the reason
(a failure under CI=true)."""

import asyncio
import base64
import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.egress.credential_tokens import EdDsaEgressCredentialSigner
from adapters.egress.squid_config import SquidLayout, render_squid_conf
from adapters.keys.egress_verify_keys import dump_verify_keys
from entrypoints.composition import Container, build_container, egress_issuer, egress_squid_config
from entrypoints.settings import Settings
from tests.conftest import IN_CI
from tests.e2e.conftest import make_settings
from tests.integration.egress.seed import seed_users

SRC = Path(__file__).resolve().parents[3] / "src"
# The pool on this machine: loopback addresses answer locally on Linux.
POOL = tuple(f"127.0.0.{n}" for n in range(2, 31))
# Squid must not wait 30 s for open tunnels on shutdown, nor ping anything, in a test.
TEST_ONLY_LINES = "shutdown_lifetime 1 seconds\npinger_enable off\n"


def squid_binary() -> str:
    found = shutil.which("squid") or ("/usr/sbin/squid" if Path("/usr/sbin/squid").exists() else None)
    if found is None:
        message = "squid is not installed (Debian package `squid`; .ci/run installs it)"
        if IN_CI:
            pytest.fail(message + "; under CI=true that is a failure", pytrace=False)
        pytest.skip(message)
    return found


def squid_directory() -> Path:
    """Squid drops to its own user (`proxy`): its directory must be reachable by it, which
    pytest's private tmp_path is not."""
    directory = Path(tempfile.mkdtemp(prefix="bulwark-squid-"))
    directory.chmod(0o777)
    return directory


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _runs_as_squid(python: str) -> bool:
    """Squid's user can start this interpreter and it is this one's CPython minor version (so
    the compiled wheels of this checkout's site-packages load)."""
    want = f"{sys.version_info.major}.{sys.version_info.minor}"
    probe = subprocess.run(
        ["runuser", "-u", "proxy", "--", python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.returncode == 0 and probe.stdout.strip() == want


@functools.cache
def helper_command() -> tuple[str, dict[str, str]]:
    """Squid runs its helpers as its unprivileged user (`proxy`), which may not reach this
    interpreter (pyenv under /root): then Debian's python3 of the same minor version runs the
    helper on this checkout's site-packages."""
    for python in (os.path.realpath(sys.executable), "/usr/bin/python3"):
        if Path(python).exists() and _runs_as_squid(python):
            path = os.pathsep.join([str(SRC), sysconfig.get_paths()["purelib"]])
            return f"{python} -m entrypoints.cli egress squid-helper", {"PYTHONPATH": path}
    message = "no Python of this version that Squid's user `proxy` may run (the helper's interpreter)"
    if IN_CI:
        pytest.fail(message + "; under CI=true that is a failure", pytrace=False)
    pytest.skip(message)


@dataclass
class BrokerEcho:
    """Answers every connection with `from <source address>` and then echoes."""

    port: int = 0
    sources: list[str] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    server: asyncio.Server | None = None

    hosts: tuple[str, ...] = ("127.0.0.1",)  # ("127.0.0.1", "::1"): a dual-stack broker

    async def start(self) -> None:
        self.port = free_port()
        self.server = await asyncio.start_server(self._serve, list(self.hosts), self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        source = writer.get_extra_info("peername")[0]
        self.sources.append(source)
        self.writers.append(writer)
        writer.write(f"from {source}\n".encode())
        await writer.drain()
        try:
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for writer in self.writers:
                writer.close()


@dataclass
class Tunnel:
    status: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    source: str = ""  # what the broker saw

    def close(self) -> None:
        self.writer.close()


@dataclass
class SquidGateway:
    settings: Settings
    port: int
    manager_port: int
    broker: BrokerEcho
    signer: EdDsaEgressCredentialSigner
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    service_name: str = field(default_factory=lambda: f"bulwark{uuid.uuid4().hex[:12]}")

    def credential(self, user_id: uuid.UUID, address: str, expires_at: datetime) -> str:
        return self.signer.sign(user_id, address, expires_at)

    async def connect(
        self, username: str | None, password: str | None, target: tuple[str, int] | None = None
    ) -> Tunnel:
        """CONNECT through Squid; on 200 the broker's first line says the source address."""
        host, port = target or ("127.0.0.1", self.broker.port)
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        lines = [f"CONNECT {host}:{port} HTTP/1.1", f"Host: {host}:{port}"]
        if username is not None:
            login = base64.b64encode(f"{username}:{password}".encode()).decode()
            lines.append(f"Proxy-Authorization: Basic {login}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
        status = int(head.split(b" ", 2)[1])
        tunnel = Tunnel(status, reader, writer)
        if status == 200:
            line = await asyncio.wait_for(reader.readline(), 10)
            tunnel.source = line.decode().strip().removeprefix("from ")
        else:
            writer.close()
        return tunnel

    def cache_log(self) -> str:
        logs = [self.directory / "squid.stderr", self.directory / "cache.log"]
        return "".join(p.read_text(errors="replace") for p in logs if p.exists())


def render_for_test(settings: Settings, directory: Path) -> str:
    command, _ = helper_command()
    layout = SquidLayout(
        pid_file=str(directory / "squid.pid"),
        cache_log=str(directory / "cache.log"),
        access_log=f"stdio:{directory / 'access.log'}",
        coredump_dir=str(directory),
    )
    return render_squid_conf(egress_squid_config(settings, command, layout)) + TEST_ONLY_LINES


def write_verify_keys(directory: Path) -> tuple[Path, str, Ed25519PrivateKey]:
    kid, key = "vk-test", Ed25519PrivateKey.generate()
    path = directory / "egress-verify-keys.json"
    path.write_text(dump_verify_keys({kid: key.public_key()}))
    path.chmod(0o644)
    return path, kid, key


def helper_environment(settings: Settings, extra: Mapping[str, str]) -> dict[str, str]:
    """Only what the helper needs: no stray BULWARK_* of the test run."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **extra}
    env.update(
        {
            "BULWARK_ENV": "development",
            "BULWARK_DATA_DIR": str(settings.data_dir),
            "BULWARK_DATABASE_URL": settings.database_url,
            "BULWARK_EGRESS_VERIFY_KEYS_FILE": str(settings.egress_verify_keys_file),
            "BULWARK_LOG_LEVEL": "WARNING",
        }
    )
    return env


async def start_squid(gateway: SquidGateway, helper_env: Mapping[str, str], extra_lines: str = "") -> None:
    directory = gateway.directory
    conf = directory / "squid.conf"
    conf.write_text(render_for_test(gateway.settings, directory) + extra_lines)
    conf.chmod(0o644)
    # A service name of its own: Squid names its shared-memory segments after it, so test runs
    # (and a system Squid) never collide.
    service = ["-n", gateway.service_name]
    parsed = subprocess.run(
        [squid_binary(), *service, "-k", "parse", "-f", str(conf)], capture_output=True, text=True
    )
    assert parsed.returncode == 0, parsed.stderr[-2000:]
    gateway.process = subprocess.Popen(
        [squid_binary(), *service, "-N", "-f", str(conf)],
        env=dict(helper_env),
        stdout=subprocess.DEVNULL,
        stderr=(directory / "squid.stderr").open("wb"),
        cwd=directory,
    )
    for _ in range(200):
        if gateway.process.poll() is not None:
            raise AssertionError(f"squid exited:\n{gateway.cache_log()[-3000:]}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"squid does not listen:\n{gateway.cache_log()[-3000:]}")


def stop_squid(gateway: SquidGateway) -> None:
    process = gateway.process
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
    for segment in Path("/dev/shm").glob(f"{gateway.service_name}-*"):
        segment.unlink(missing_ok=True)


@dataclass
class RunningGateway:
    """Squid with Bulwark's helper in front of a broker echo, and the service's container whose
    ledger has allocated every paying user."""

    squid: SquidGateway
    container: Container
    paying: list[uuid.UUID]
    free: list[uuid.UUID]
    addresses: dict[uuid.UUID, str]  # each paying user's dedicated address


@contextlib.asynccontextmanager
async def running_gateway(
    database_url: str,
    tmp_path: Path,
    *,
    pool: str = ",".join(POOL),
    paying: int = 1,
    free: int = 0,
    helper_children: int = 1,
    target_host: str = "127.0.0.1",
    broker_hosts: tuple[str, ...] = ("127.0.0.1",),
    hosts_text: str | None = None,
) -> AsyncIterator[RunningGateway]:
    """`hosts_text`: Squid's hosts file (test-only: it stands in for the broker's DNS)."""
    squid_binary()
    broker = BrokerEcho(hosts=broker_hosts)
    await broker.start()
    directory = squid_directory()
    extra = ""
    if hosts_text is not None:
        hosts = directory / "hosts"
        hosts.write_text(hosts_text)
        hosts.chmod(0o644)
        extra = f"hosts_file {hosts}\n"
    verify_keys, kid, key = write_verify_keys(directory)
    port, manager_port = free_port(), free_port()
    settings = make_settings(
        tmp_path,
        database_url=database_url,
        egress_pool=pool,
        egress_broker_targets=(f"{target_host}:{broker.port}",),
        egress_squid_listen=f"127.0.0.1:{port}",
        egress_squid_manager_url=f"http://127.0.0.1:{manager_port}/squid-internal-mgr/",
        egress_squid_credentials_ttl_seconds=1,
        egress_verify_keys_file=verify_keys,
        egress_helper_children=helper_children,
    )
    container = build_container(settings)
    paying_users = await seed_users(container.engine, paying, plan="pro")
    free_users = await seed_users(container.engine, free, plan="free") if free else []
    assert (await container.egress.job()).allocated == paying  # seeds the pool, allocates
    addresses = {}
    for user in paying_users:
        address = await container.egress.bindings.live_address(user)
        assert address is not None
        addresses[user] = address
    signer = EdDsaEgressCredentialSigner({kid: key}, kid, issuer=egress_issuer(settings))
    squid = SquidGateway(settings, port, manager_port, broker, signer, directory)
    await start_squid(squid, helper_environment(settings, helper_command()[1]), extra)
    try:
        yield RunningGateway(squid, container, paying_users, free_users, addresses)
    finally:
        stop_squid(squid)
        await broker.stop()
        await container.stop()
        if not os.environ.get("KEEP_SQUID_DIR"):  # set it to read Squid's logs after a failure
            shutil.rmtree(directory, ignore_errors=True)
