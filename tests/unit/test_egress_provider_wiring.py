"""composition.egress_provider: the provider BULWARK_EGRESS_PROVIDER names, the Hetzner token only
from the keyring."""

from pathlib import Path

import pytest

from adapters.egress.hetzner.primary_ips import HetznerPrimaryIpProvider
from adapters.egress.static_pool import StaticPoolProvider
from adapters.keys.keyring import KeyringError
from entrypoints.composition import egress_provider
from entrypoints.settings import Settings, load_settings

HETZNER = {
    "BULWARK_EGRESS_PROVIDER": "hetzner",
    "BULWARK_EGRESS_HETZNER_SERVER_ID": "42",
    "BULWARK_EGRESS_HETZNER_DATACENTER": "fsn1-dc14",
}


def settings(environ: dict[str, str]) -> Settings:
    return load_settings(environ, dotenv=Path("/nonexistent/.env"))


async def test_static_is_the_default_and_lists_the_pool() -> None:
    provider = egress_provider(settings({"BULWARK_EGRESS_POOL": "127.0.0.2"}), {})
    assert isinstance(provider, StaticPoolProvider)
    assert [a.address for a in await provider.owned()] == ["127.0.0.2"]


def test_hetzner_needs_its_token_in_the_keyring() -> None:
    with pytest.raises(KeyringError, match="hetzner_api_token"):
        egress_provider(settings(HETZNER), {})
    provider = egress_provider(settings(HETZNER), {"hetzner_api_token": "hc-secret-value"})
    assert isinstance(provider, HetznerPrimaryIpProvider)
    assert "hc-secret-value" not in repr(provider._api)
