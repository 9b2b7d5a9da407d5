"""The server worker's ASGI factory: what it builds at startup is kept out of the collector's
full collections (gc.freeze), after the garbage made while building is collected."""

import gc
import os
from pathlib import Path

import pytest

from entrypoints import asgi


def test_the_worker_freezes_what_it_built_after_collecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in [n for n in os.environ if n.startswith("BULWARK_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("BULWARK_DATA_DIR", str(tmp_path / "data"))
    calls: list[str] = []
    monkeypatch.setattr(gc, "collect", lambda *args: calls.append("collect") or 0)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    app = asgi.create()
    assert callable(app)
    assert calls == ["collect", "freeze"]
