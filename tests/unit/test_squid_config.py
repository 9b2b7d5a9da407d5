"""The rendered squid.conf: each pool address leaves only when the helper's note names it,
CONNECT to the configured broker targets is all that is allowed, no caching, and Squid reuses a
helper's answer no longer than the setting (itself at most a credential's life)."""

import dataclasses
from pathlib import Path

import pytest

from adapters.egress.squid_config import EgressSquidConfig, render_squid_conf
from entrypoints.composition import egress_squid_config
from entrypoints.settings import Settings, SettingsError, load_settings, validate


def config(**overrides: object) -> EgressSquidConfig:
    base = EgressSquidConfig(
        listen=("10.0.0.2", 3128),
        manager_port=3129,
        addresses=("203.0.113.2", "203.0.113.3"),
        targets=(("live.ctraderapi.com", 5035), ("198.51.100.9", 443)),
        helper_command="/opt/bulwark/bin/bulwark egress squid-helper",
        credentials_ttl_seconds=5,
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def lines() -> list[str]:
    return [line for line in render_squid_conf(config()).splitlines() if line and not line.startswith("#")]


def test_one_outgoing_address_per_pool_address_selected_by_the_helpers_note() -> None:
    rendered = lines()
    for address in ("203.0.113.2", "203.0.113.3"):
        acl = f"bulwark_addr_{address.replace('.', '_')}"
        assert f"acl {acl} note egress_address {address}" in rendered
        assert f"tcp_outgoing_address {address} {acl}" in rendered
    outgoing = [line for line in rendered if line.startswith("tcp_outgoing_address") and "100::1" not in line]
    # The IPv4 lines: never unconditional.
    assert len(outgoing) == 2 and all(len(line.split()) == 3 for line in outgoing)


def test_only_connect_to_the_broker_targets_with_a_pool_address_and_nothing_else() -> None:
    access = [line for line in lines() if line.startswith("http_access")]
    allows = [line for line in access if line.startswith("http_access allow")]
    assert allows == [
        "http_access allow manager bulwark_manager_port localhost",
        "http_access allow CONNECT bulwark_auth bulwark_pool bulwark_target_0_host bulwark_target_0_port",
        "http_access allow CONNECT bulwark_auth bulwark_pool bulwark_target_1_host bulwark_target_1_port",
    ]
    assert access[-1] == "http_access deny all"
    rendered = lines()
    assert "acl bulwark_target_0_host dstdomain -n live.ctraderapi.com" in rendered
    assert "acl bulwark_target_1_host dst 198.51.100.9" in rendered
    assert "acl bulwark_target_1_port port 443" in rendered
    assert "acl bulwark_pool note egress_address 203.0.113.2 203.0.113.3" in rendered
    assert "cache deny all" in rendered
    assert "http_port 127.0.0.1:3129 name=bulwark_manager" in rendered  # the manager: loopback only


def test_the_helper_and_how_long_squid_may_reuse_its_answers() -> None:
    rendered = lines()
    assert "auth_param basic program /opt/bulwark/bin/bulwark egress squid-helper" in rendered
    assert "auth_param basic credentialsttl 5 seconds" in rendered
    assert "auth_param basic children 4 startup=1 idle=1 concurrency=64" in rendered
    assert "auth_param basic casesensitive on" in rendered


def test_nothing_to_render_without_a_pool_or_targets() -> None:
    with pytest.raises(ValueError):
        render_squid_conf(config(addresses=()))
    with pytest.raises(ValueError):
        render_squid_conf(config(targets=()))
    with pytest.raises(ValueError):
        render_squid_conf(config(addresses=("not-an-address",)))


def test_settings_keep_squids_reuse_within_a_credentials_life(tmp_path: object) -> None:
    base = Settings(egress_pool="127.0.0.2,127.0.0.3", egress_broker_targets=("127.0.0.1:5035",))
    validate(base)
    for wrong in (
        {"egress_squid_credentials_ttl_seconds": 301},
        {"egress_squid_credentials_ttl_seconds": 0},
        {"egress_credential_ttl_seconds": 30},
        {"egress_broker_targets": ("no-port",)},
        {"egress_broker_targets": ("host:99999",)},
        {"egress_squid_listen": "10.0.0.2"},
        {"egress_squid_manager_url": "http://10.0.0.5:3129/squid-internal-mgr/"},
    ):
        with pytest.raises(SettingsError):
            validate(dataclasses.replace(base, **wrong))  # type: ignore[arg-type]
    rendered = render_squid_conf(egress_squid_config(base, "bulwark egress squid-helper"))
    assert "tcp_outgoing_address 127.0.0.3 bulwark_addr_127_0_0_3" in rendered
    assert "acl bulwark_target_0_port port 5035" in rendered


def test_ipv6_destinations_bind_a_discard_address_so_they_never_leave_from_the_hosts_own() -> None:
    rendered = lines()
    # Unconditional and last: Squid applies it to IPv6 destinations only (the lines above are
    # IPv4 and do not match them), and the host holds no address of RFC 6666's prefix.
    assert rendered[-1] == "tcp_outgoing_address 100::1"
    assert (
        sum(1 for line in rendered if line.split()[:1] == ["tcp_outgoing_address"] and len(line.split()) == 2)
        == 1
    )


def test_broker_targets_are_ascii_host_names_or_ipv4_addresses_and_nothing_squid_would_read_as_syntax() -> (
    None
):
    base = Settings(egress_pool="127.0.0.2", egress_broker_targets=("127.0.0.1:5035",))
    for good in ("live.ctraderapi.com:5035", "demo-1.ctraderapi.com:443", "198.51.100.9:443", "broker:80"):
        validate(dataclasses.replace(base, egress_broker_targets=(good,)))
    for wrong in (
        "[::1]:5035",  # IPv6: would leave from the host's shared address
        "[2001:db8::1]:443",
        ".ctraderapi.com:443",  # Squid reads a leading dot as every subdomain
        "live..ctraderapi.com:443",
        "-live.ctraderapi.com:443",
        "lïve.ctraderapi.com:443",
        "live.ctraderapi.com:\uff15\uff10\uff13\uff15",  # full-width digits
        "999.1.1.1:443",
        "10.0.0.01:443",
        "live.ctraderapi.com :443",
        "live.ctraderapi.com\nhttp_access allow all:443",
        "live.ctraderapi.com#x:443",
    ):
        with pytest.raises(SettingsError):
            validate(dataclasses.replace(base, egress_broker_targets=(wrong,)))


def test_the_egress_host_runs_in_production_without_keyring_redis_or_smtp(tmp_path: Path) -> None:
    keys = tmp_path / "egress-verify-keys.json"
    keys.write_text("{}")
    environ = {
        "BULWARK_ENV": "production",
        "BULWARK_DATABASE_URL": "postgresql+asyncpg://bulwark_egress@db.internal/bulwark",
        "BULWARK_EGRESS_VERIFY_KEYS_FILE": str(keys),
    }
    settings = load_settings(environ, dotenv=tmp_path / "none.env", egress_host=True)
    assert settings.keys_file is None and not settings.redis_url and not settings.smtp_host
    with pytest.raises(SettingsError, match="Redis"):  # the service itself still needs them all
        load_settings(environ, dotenv=tmp_path / "none.env")
    without_keys = {k: v for k, v in environ.items() if k != "BULWARK_EGRESS_VERIFY_KEYS_FILE"}
    with pytest.raises(SettingsError, match="VERIFY_KEYS_FILE"):
        load_settings(without_keys, dotenv=tmp_path / "none.env", egress_host=True)
    with pytest.raises(SettingsError, match="PostgreSQL"):
        load_settings({**environ, "BULWARK_DATABASE_URL": ""}, dotenv=tmp_path / "none.env", egress_host=True)
