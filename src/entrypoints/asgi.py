"""ASGI entry for the server workers (granian `--factory`): each worker builds its own container."""

from entrypoints.app import create_asgi
from entrypoints.composition import build_container
from entrypoints.http.asgi_types import ASGIApp
from entrypoints.logging_setup import configure_logging
from entrypoints.settings import load_settings


def create() -> ASGIApp:
    settings = load_settings()
    configure_logging(settings.log_level, settings.effective_log_json)
    return create_asgi(build_container(settings))
