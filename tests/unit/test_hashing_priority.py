"""Password hashing runs below the event loop's CPU priority, one thread at a time (Linux)."""

import dataclasses
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from adapters.passwords import hashing_priority
from adapters.passwords.hashing_priority import lower_this_thread
from entrypoints.composition import build_container
from tests.e2e.conftest import make_settings

pytestmark = pytest.mark.skipif(not hasattr(os, "getpriority"), reason="POSIX priorities")


def own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def in_a_thread(increment: int) -> tuple[bool, int, int]:
    """(moved, nice before, nice after) of a fresh thread that lowers itself."""
    out: list[tuple[bool, int, int]] = []

    def run() -> None:
        before = own_nice()
        moved = lower_this_thread(increment)
        out.append((moved, before, own_nice()))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return out[0]


def test_only_the_calling_thread_moves() -> None:
    mine = own_nice()
    moved, before, after = in_a_thread(3)
    assert before == mine
    assert after == min(hashing_priority.MAX_NICE, before + 3)
    assert moved == (before < hashing_priority.MAX_NICE)  # a process already at 19 cannot go lower
    assert own_nice() == mine  # the rest of the process (the event loop) keeps its priority


def test_capped_at_the_lowest_priority() -> None:
    moved, before, after = in_a_thread(100)
    assert after == hashing_priority.MAX_NICE
    assert moved == (before < hashing_priority.MAX_NICE)


def test_zero_changes_nothing() -> None:
    moved, before, after = in_a_thread(0)
    assert not moved and after == before


def test_a_refusal_is_logged_and_hashing_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*_: object) -> None:
        raise PermissionError("setpriority filtered")

    monkeypatch.setattr(os, "getpriority", lambda *_: 0)  # however nice the test process runs
    monkeypatch.setattr(os, "setpriority", refuse)
    with caplog.at_level(logging.WARNING, logger="bulwark.passwords"):
        moved, _, _ = in_a_thread(5)
    assert not moved
    assert "normal CPU priority" in caplog.text


@pytest.mark.parametrize("nice", [0, 7])
async def test_the_workers_hashing_threads_run_that_far_below_the_loop(tmp_path: Path, nice: int) -> None:
    settings = dataclasses.replace(make_settings(tmp_path), argon2_nice=nice)
    container = build_container(settings)
    try:
        pool: ThreadPoolExecutor = container.argon2_pool
        hashing = pool.submit(own_nice).result(timeout=10)
        assert hashing == min(hashing_priority.MAX_NICE, own_nice() + nice)
        # and the hasher uses that pool, not one of its own
        assert container.hasher._executor is pool
    finally:
        await container.stop()
