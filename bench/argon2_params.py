"""Measure argon2id cost on this machine to choose Bulwark's default parameters.

Run: .venv/bin/python bench/argon2_params.py [--seconds 3]

For each setting it reports the latency of one hash (median, single thread) and the throughput
with 1 and 2 worker threads (argon2-cffi releases the GIL, so threads run in parallel). The
default should stay above the OWASP floor (m=19 MiB, t=2, p=1) and keep one hash near 50-100 ms.
"""

import argparse
import os
import secrets
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from argon2.low_level import Type, hash_secret_raw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from adapters.passwords.hash_memory import keep_hash_memory

# (memory KiB, time cost, parallelism); m=46 MiB t=1 is OWASP-listed but below our t floor of 2.
SETTINGS: list[tuple[int, int, int]] = [
    (19 * 1024, 2, 1),
    (32 * 1024, 2, 1),
    (46 * 1024, 2, 1),
    (46 * 1024, 3, 1),
    (56 * 1024, 2, 1),
    (64 * 1024, 2, 1),
    (64 * 1024, 3, 1),
    (128 * 1024, 2, 1),
]


def one_hash(memory_kib: int, time_cost: int, parallelism: int) -> None:
    hash_secret_raw(
        secrets.token_bytes(32),
        secrets.token_bytes(16),
        time_cost=time_cost,
        memory_cost=memory_kib,
        parallelism=parallelism,
        hash_len=32,
        type=Type.ID,
    )


def latency_ms(setting: tuple[int, int, int], seconds: float) -> float:
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 5:
        start = time.perf_counter()
        one_hash(*setting)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def throughput(setting: tuple[int, int, int], threads: int, seconds: float) -> float:
    """Hashes per second with `threads` workers each hashing back to back."""

    def worker() -> int:
        done = 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            one_hash(*setting)
            done += 1
        return done

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        total = sum(f.result() for f in [pool.submit(worker) for _ in range(threads)])
    return total / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per cell")
    args = parser.parse_args()
    # As the server does: the hash memory stays mapped between hashes (see hash_memory).
    kept = keep_hash_memory(max(memory_kib for memory_kib, _, _ in SETTINGS))
    print(f"CPUs: {os.cpu_count()}; {args.seconds:.0f} s per cell; argon2id, 32-byte input and output")
    kept_text = "yes (up to ~63 MiB)" if kept else "no (not glibc)"
    print(f"hash memory kept mapped between hashes, as the server does: {kept_text}")
    print("| m (MiB) | t | p | one hash, median (ms) | hashes/s, 1 thread | hashes/s, 2 threads |")
    print("|---|---|---|---|---|---|")
    for setting in SETTINGS:
        memory_kib, time_cost, parallelism = setting
        one_hash(*setting)  # warm up: page in the memory once
        ms = latency_ms(setting, args.seconds)
        single = throughput(setting, 1, args.seconds)
        double = throughput(setting, 2, args.seconds)
        cells = [memory_kib // 1024, time_cost, parallelism, f"{ms:.1f}", f"{single:.1f}", f"{double:.1f}"]
        print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
