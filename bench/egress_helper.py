"""Benchmark of the egress gateway's Squid helper: answers per second through the real protocol.

Run: .venv/bin/python bench/egress_helper.py [--seconds 5] [--rounds 3] [--concurrency 64]

A throw-away PostgreSQL database migrated by its owner; 250 users, each holding an `allocated`
address of the ledger (127.0.1.0/24); `bulwark egress squid-helper` started like Squid starts it
(one process, its stdin/stdout a pipe pair, connecting as the unprivileged service role), fed
`<channel-ID> <username> <credential>` lines with at most --concurrency outstanding, as Squid does
with `concurrency=64`. Every answer is checked (OK with the user's own address as the note).

Phases, in alternating slices of one run:
- ceiling: lines the helper refuses before any work (a malformed username): the protocol loop;
- known: the 250 users' credentials round robin (what Squid sends: the same login again after
  `credentialsttl`): signature answered from the verify cache, the ledger read every time;
- fresh: a credential never seen before on every line (an Ed25519 check + the ledger read).

Per core = answers / the helper's own CPU seconds (user + system, /proc/<pid>/stat): the helper is
single-threaded, so this is what one core of the egress host gives. Target: >= 2,000 per core.
Figures on this shared 2-core machine move with the other engineers' load; compare ratios."""

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent / "src"))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from run import (  # noqa: E402  (bench/ sibling: database and process helpers)
    SERVICE_ROLE,
    bulwark_command,
    create_database,
    drop_database,
    grant_service_role,
    machine,
    migrate,
)
from seed_rows import org_with_owner  # noqa: E402

from adapters.egress.credential_tokens import EdDsaEgressCredentialSigner  # noqa: E402
from adapters.keys.egress_verify_keys import dump_verify_keys  # noqa: E402
from domain.egress_credentials import proxy_username  # noqa: E402

TARGET_PER_CORE = 2000.0
USERS = 250
ISSUER = "bulwark/vault"  # BULWARK_JWT_ISSUER's default + "/vault", as the vault signs


@dataclass
class Phase:
    name: str
    answers: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    wrong: int = 0

    @property
    def per_second(self) -> float:
        return self.answers / self.seconds if self.seconds else 0.0

    @property
    def per_core(self) -> float:
        return self.answers / self.cpu if self.cpu else 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def seed(db_url_dsn: str, now: datetime) -> list[tuple[uuid.UUID, str]]:
    conn = await asyncpg.connect(db_url_dsn)
    held = []
    try:
        for n in range(USERS):
            _, user = await org_with_owner(conn, n, now, "egress")
            await conn.execute("UPDATE users SET plan = 'pro' WHERE id = $1", user)
            address = f"127.0.1.{n + 1}"
            await conn.execute(
                "INSERT INTO egress_addresses (address, provider_ref, state, user_id, since) "
                "VALUES ($1, $1, 'allocated', $2, $3)",
                address,
                user,
                now,
            )
            held.append((user, address))
    finally:
        await conn.close()
    return held


class Helper:
    """One helper process, driven like Squid: channel-IDs, a bounded number outstanding."""

    def __init__(self, process: asyncio.subprocess.Process, concurrency: int) -> None:
        self.process = process
        self.concurrency = concurrency

    async def drive(self, lines: "deque[tuple[bytes, bytes]]", seconds: float) -> Phase:
        """Sends lines (round robin over `lines`) for `seconds`; counts and checks the answers."""
        assert self.process.stdin is not None and self.process.stdout is not None
        stdin, stdout = self.process.stdin, self.process.stdout
        expected: dict[int, bytes] = {}
        free = list(range(self.concurrency))
        phase = Phase("")
        deadline = time.perf_counter() + seconds
        began, cpu0 = time.perf_counter(), cpu_seconds(self.process.pid)

        def send_one() -> None:
            channel = free.pop()
            line, answer = lines[0]
            lines.rotate(-1)
            expected[channel] = answer
            stdin.write(b"%d %s\n" % (channel, line))

        while free:
            send_one()
        while expected:
            raw = await stdout.readline()
            channel_text, _, rest = raw.rstrip(b"\n").partition(b" ")
            channel = int(channel_text)
            phase.answers += 1
            if rest != expected.pop(channel):
                phase.wrong += 1
            free.append(channel)
            if time.perf_counter() < deadline:
                while free:
                    send_one()
                if stdin.transport.get_write_buffer_size() > 65536:
                    await stdin.drain()
        phase.seconds = time.perf_counter() - began
        phase.cpu = cpu_seconds(self.process.pid) - cpu0
        return phase


async def main_async(args: argparse.Namespace) -> int:
    name, owner_url = await create_database()
    workdir = Path(tempfile.mkdtemp(prefix="bulwark-bench-egress-"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BULWARK_")},
        "PYTHONPATH": str(BENCH_DIR.parent / "src"),
        "BULWARK_DATA_DIR": str(workdir),
        "BULWARK_DATABASE_URL": owner_url,
        "BULWARK_LOG_LEVEL": "WARNING",
    }
    try:
        migrate(env, workdir)
        grant_service_role(env, workdir)
        now = datetime.now(UTC)
        held = await seed(owner_url.replace("postgresql+asyncpg", "postgresql"), now)
        key = Ed25519PrivateKey.generate()
        keys_file = workdir / "egress-verify-keys.json"
        keys_file.write_text(dump_verify_keys({"vk-bench": key.public_key()}))
        signer = EdDsaEgressCredentialSigner({"vk-bench": key}, "vk-bench", issuer=ISSUER)
        expires = now + timedelta(minutes=10)

        def line(user: uuid.UUID, address: str, credential: str) -> tuple[bytes, bytes]:
            return (
                f"{proxy_username(user, address, credential)} {credential}".encode(),
                f"OK egress_address={address}".encode(),
            )

        known = deque(line(u, a, signer.sign(u, a, expires)) for u, a in held)
        fresh_count = int(args.seconds * args.rounds * 6000)
        print(f"signing {fresh_count} fresh credentials ...", flush=True)
        fresh = deque(
            line(u, a, signer.sign(u, a, expires + timedelta(seconds=i)))
            for i, (u, a) in zip(
                range(fresh_count), (held[i % USERS] for i in range(fresh_count)), strict=True
            )
        )
        ceiling = deque([(b"not-a-username x", b"ERR message=malformed")])
        helper_env = {
            **env,
            "BULWARK_DATABASE_URL": owner_url.replace("postgres@", f"{SERVICE_ROLE}@"),
            "BULWARK_EGRESS_VERIFY_KEYS_FILE": str(keys_file),
            "BULWARK_JWT_ISSUER": "bulwark",
        }
        process = await asyncio.create_subprocess_exec(
            bulwark_command(),
            "egress",
            "squid-helper",
            env=helper_env,
            cwd=workdir,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 20,
        )
        helper = Helper(process, args.concurrency)
        await helper.drive(deque(list(known)), 1.0)  # warm-up: imports done, pool open, caches filled
        totals = {n: Phase(n) for n in ("ceiling", "known", "fresh")}
        sources = {"ceiling": ceiling, "known": known, "fresh": fresh}
        for _ in range(args.rounds):
            for phase_name, total in totals.items():
                got = await helper.drive(sources[phase_name], args.seconds)
                total.answers += got.answers
                total.seconds += got.seconds
                total.cpu += got.cpu
                total.wrong += got.wrong
        assert process.stdin is not None
        process.stdin.close()
        await process.wait()
    finally:
        await drop_database(name)
    report = [
        f"Egress helper, {args.rounds} x {args.seconds:g} s per phase, concurrency {args.concurrency}, "
        f"{machine()} (shared: other engineers' work runs at the same time)",
        "",
        "| phase | answers/s (wall) | answers per helper CPU-second (per core) | wrong answers | target |",
        "|---|---|---|---|---|",
    ]
    ok = True
    for phase in totals.values():
        target = ""
        if phase.name != "ceiling":
            passed = phase.per_core >= TARGET_PER_CORE and phase.wrong == 0
            ok = ok and passed
            target = f"{'PASS' if passed else 'FAIL'} (>= {TARGET_PER_CORE:,.0f}/core)"
        report.append(
            f"| {phase.name} | {phase.per_second:,.0f} | {phase.per_core:,.0f} | {phase.wrong} | {target} |"
        )
    text = "\n".join(report)
    print(text)
    results = BENCH_DIR / "results"
    results.mkdir(exist_ok=True)
    (results / "egress_helper.md").write_text(text + "\n")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
