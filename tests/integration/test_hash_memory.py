"""keep_hash_memory against the real C library: hashes after the first fault no memory in.

Each case runs in a fresh interpreter, since the setting is process-wide and one-way."""

import json
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

# Three 46 MiB hashes in a worker thread, as the server runs them, after one to warm up.
PROBE = """
import json, resource, sys
from concurrent.futures import ThreadPoolExecutor
from argon2.low_level import Type, hash_secret_raw
from adapters.passwords.hash_memory import keep_hash_memory

MEMORY_KIB = 46 * 1024
kept = keep_hash_memory(MEMORY_KIB) if sys.argv[1] == "keep" else None

def one() -> None:
    hash_secret_raw(b"s" * 32, b"salt" * 4, time_cost=2, memory_cost=MEMORY_KIB,
                    parallelism=1, hash_len=32, type=Type.ID)

with ThreadPoolExecutor(max_workers=1) as pool:
    pool.submit(one).result()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        pool.submit(one).result()
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3
print(json.dumps({"kept": kept, "faults_per_hash": faults}))
"""


def probe(mode: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_hashes_reuse_their_memory_once_it_is_kept() -> None:
    kept = probe("keep")
    assert kept["kept"] is True  # this machine's C library is glibc
    # 46 MiB is ~11,800 pages: a hash that maps its memory anew faults on every one of them.
    assert isinstance(kept["faults_per_hash"], float) and kept["faults_per_hash"] < 500


def test_without_it_every_hash_maps_its_memory_anew() -> None:
    # The premise of the setting: glibc's default gives a 46 MiB block back on every free.
    plain = probe("plain")
    assert isinstance(plain["faults_per_hash"], float) and plain["faults_per_hash"] > 5000
