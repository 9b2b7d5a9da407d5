"""Run the Alembic migrations programmatically (CLI `bulwark db upgrade`, embedded start, tests)."""

from pathlib import Path

from alembic import command
from alembic.config import Config

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def alembic_config(url: str) -> Config:
    ini = PROJECT_ROOT / "alembic.ini"
    if not ini.is_file():
        raise RuntimeError(f"alembic.ini not found at {ini}; run from a checkout of Bulwark")
    config = Config(str(ini))
    config.attributes["bulwark_url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Blocking; call from outside a running event loop."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)
