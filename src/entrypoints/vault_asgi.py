"""ASGI entry for the credential vault's workers (`bulwark vault serve`)."""

from entrypoints.composition import build_vault_container
from entrypoints.http.asgi_types import ASGIApp
from entrypoints.logging_setup import configure_logging
from entrypoints.settings import load_settings
from entrypoints.vault_app import create_vault_asgi


def create() -> ASGIApp:
    settings = load_settings()
    configure_logging(settings.log_level, settings.effective_log_json)
    return create_vault_asgi(build_vault_container(settings))
