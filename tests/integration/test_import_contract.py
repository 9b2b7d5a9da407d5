"""The layer rule is enforced by import-linter: a domain module importing a driver breaks the build."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    copy.mkdir()
    shutil.copytree(ROOT / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy2(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def lint(project: Path) -> tuple[int, str]:
    """Exit code and the report with line wrapping undone (it depends on the terminal width)."""
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=project, env=env, capture_output=True, text=True, timeout=120
    )
    return result.returncode, " ".join((result.stdout + result.stderr).split())


def test_unmodified_project_keeps_its_contracts(project_copy: Path) -> None:
    code, report = lint(project_copy)
    assert code == 0, report
    assert " 0 broken" in report and "BROKEN" not in report


def test_domain_importing_sqlalchemy_breaks_the_contract(project_copy: Path) -> None:
    (project_copy / "src" / "domain" / "leak.py").write_text("import sqlalchemy  # noqa: F401\n")
    code, report = lint(project_copy)
    assert code != 0, report
    assert (
        "The core (domain, application) stays free of frameworks, drivers and I/O libraries BROKEN" in report
    )
    assert "domain is not allowed to import sqlalchemy" in report
    assert "domain.leak -> sqlalchemy" in report


def test_domain_importing_an_outer_layer_breaks_the_contract(project_copy: Path) -> None:
    (project_copy / "src" / "domain" / "leak.py").write_text("import adapters.clock  # noqa: F401\n")
    code, report = lint(project_copy)
    assert code != 0, report
    assert "Hexagonal layers: entrypoints > adapters > application > domain BROKEN" in report
    assert "domain.leak -> adapters.clock" in report
