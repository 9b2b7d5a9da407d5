"""Settings: defaults, one-line errors naming the variable, and production's refusals."""

from pathlib import Path

import pytest

from entrypoints.settings import Settings, SettingsError, load_settings, parse_duration

NO_DOTENV = Path("/nonexistent/.env")

PRODUCTION = {
    "BULWARK_ENV": "production",
    "BULWARK_DATABASE_URL": "postgresql+asyncpg://bulwark@db.internal/bulwark",
    "BULWARK_REDIS_URL": "redis://cache.internal:6379/0",
    "BULWARK_KEYS_FILE": "/run/secrets/bulwark-keys.json",
    "BULWARK_SMTP_HOST": "smtp.internal",
    "BULWARK_FRONTEND_URL": "https://app.example.com",
}


def load(environ: dict[str, str]) -> Settings:
    return load_settings(environ, dotenv=NO_DOTENV)


def refusal(environ: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as raised:
        load(environ)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_defaults_are_embedded_development_on_localhost() -> None:
    settings = load({})
    assert settings == Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert not settings.is_production
    assert settings.embedded_database
    assert settings.effective_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.effective_database_url.endswith("data/bulwark.sqlite3")
    assert settings.redis_url == "" and settings.effective_workers == 1
    assert settings.max_body_bytes == 64 * 1024
    assert settings.request_timeout_seconds == 10.0
    assert settings.effective_allowed_origins == ("http://localhost:5173",)


def test_values_are_parsed_into_their_types() -> None:
    settings = load(
        {
            "BULWARK_PORT": " 9000 ",
            "BULWARK_SMTP_STARTTLS": "no",
            "BULWARK_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1,",
            "BULWARK_DATA_DIR": "/var/lib/bulwark",
            "BULWARK_REQUEST_TIMEOUT_SECONDS": "2.5",
        }
    )
    assert settings.port == 9000
    assert settings.smtp_starttls is False
    assert settings.trusted_proxies == ("10.0.0.0/8", "192.0.2.1")
    assert settings.data_dir == Path("/var/lib/bulwark")
    assert settings.request_timeout_seconds == 2.5


def test_bad_int_names_the_variable() -> None:
    message = refusal({"BULWARK_PORT": "abc"})
    assert "BULWARK_PORT" in message and "abc" in message and "whole number" in message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BULWARK_PORT", "70000"),
        ("BULWARK_SMTP_STARTTLS", "maybe"),
        ("BULWARK_REQUEST_TIMEOUT_SECONDS", "nan"),
        ("BULWARK_REQUEST_TIMEOUT_SECONDS", "0"),
        ("BULWARK_DATA_DIR", ""),
        ("BULWARK_ENV", "staging"),
        ("BULWARK_DATABASE_URL", "mysql://db/bulwark"),
        ("BULWARK_DATABASE_POOL_SIZE", "0"),
        ("BULWARK_LOGIN_LIMIT_PER_ACCOUNT", "5 per minute"),
        ("BULWARK_ALLOWED_ORIGINS", "https://app.example.com/path"),
        ("BULWARK_ARGON2_NICE", "20"),
        ("BULWARK_ARGON2_NICE", "-1"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str) -> None:
    assert variable in refusal({variable: value})


def test_a_limit_window_given_twice_is_refused() -> None:
    # Both tiers would count in one limiter key, and the stricter would quietly not apply.
    message = refusal({"BULWARK_LOGIN_LIMIT_PER_ACCOUNT": "5/60,10/60"})
    assert "BULWARK_LOGIN_LIMIT_PER_ACCOUNT" in message and "given twice" in message
    assert load({"BULWARK_LOGIN_LIMIT_PER_ACCOUNT": "5/60,10/3600"}).login_limit_per_account


def test_unknown_bulwark_variable_is_refused() -> None:
    message = refusal({"BULWARK_DATABSE_URL": "postgresql+asyncpg://db/bulwark"})
    assert "BULWARK_DATABSE_URL" in message


def test_unrelated_variables_are_ignored() -> None:
    assert load({"PATH": "/usr/bin", "DATABASE_URL": "x", "BULWARK_TEST_DATABASE_URL": "y"}) == Settings()


def test_complete_production_configuration_is_accepted() -> None:
    settings = load(PRODUCTION)
    assert settings.is_production and settings.effective_log_json
    assert settings.effective_allowed_origins == ("https://app.example.com",)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"BULWARK_DATABASE_URL": ""}, "BULWARK_DATABASE_URL"),
        ({"BULWARK_DATABASE_URL": "sqlite+aiosqlite:////tmp/x.sqlite3"}, "BULWARK_DATABASE_URL"),
        ({"BULWARK_REDIS_URL": ""}, "BULWARK_REDIS_URL"),
        ({"BULWARK_KEYS_FILE": ""}, "BULWARK_KEYS_FILE"),
        ({"BULWARK_SMTP_HOST": ""}, "BULWARK_SMTP_HOST"),
        ({"BULWARK_ALLOWED_ORIGINS": "https://app.example.com,*"}, "BULWARK_ALLOWED_ORIGINS"),
        ({"BULWARK_ALLOWED_ORIGINS": "*"}, "BULWARK_ALLOWED_ORIGINS"),
    ],
)
def test_production_refuses_development_shortcuts(change: dict[str, str], named: str) -> None:
    environ = {k: v for k, v in {**PRODUCTION, **change}.items() if v != "" or k == "BULWARK_DATABASE_URL"}
    message = refusal(environ)
    assert "production" in message and named in message


def test_production_with_nothing_else_names_the_first_problem() -> None:
    message = refusal({"BULWARK_ENV": "production"})
    assert "PostgreSQL" in message and "BULWARK_DATABASE_URL" in message


def test_allowed_origins_default_to_the_frontend_origin() -> None:
    settings = load({"BULWARK_FRONTEND_URL": "https://App.Example.com:8443/spa/index.html"})
    assert settings.effective_allowed_origins == ("https://app.example.com:8443",)


def test_explicit_allowed_origins_replace_the_default() -> None:
    settings = load(
        {
            "BULWARK_FRONTEND_URL": "https://app.example.com",
            "BULWARK_ALLOWED_ORIGINS": "https://app.example.com, https://admin.example.com",
        }
    )
    assert settings.effective_allowed_origins == ("https://app.example.com", "https://admin.example.com")


def test_the_admin_panel_is_loopback_only_in_development_and_off_in_production_unless_configured() -> None:
    assert load({}).effective_admin_allowed_networks == ("127.0.0.0/8", "::1/128")
    assert load(PRODUCTION).effective_admin_allowed_networks == ()
    # Set but empty turns the panel off in development too.
    assert load({"BULWARK_ADMIN_ALLOWED_NETWORKS": ""}).effective_admin_allowed_networks == ()
    configured = load(
        {**PRODUCTION, "BULWARK_ADMIN_ALLOWED_NETWORKS": "10.20.0.0/16, 2001:db8::/32,192.0.2.7"}
    )
    assert configured.effective_admin_allowed_networks == ("10.20.0.0/16", "2001:db8::/32", "192.0.2.7")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("10.0.0.7/8", "host bits set"),  # a typo, not a wish to open all of 10/8
        ("10.0.0.0/33", "10.0.0.0/33"),
        ("admin.example.com", "admin.example.com"),
        ("127.0.0.0/8,localhost", "localhost"),
    ],
)
def test_a_malformed_admin_network_stops_start_up_naming_the_entry(value: str, why: str) -> None:
    for environ in ({}, PRODUCTION):
        message = refusal({**environ, "BULWARK_ADMIN_ALLOWED_NETWORKS": value})
        assert "BULWARK_ADMIN_ALLOWED_NETWORKS" in message and why in message


def test_dotenv_values_are_read_but_the_real_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# local overrides\n"
        "BULWARK_PORT=9100\n"
        "BULWARK_HOST='0.0.0.0'\n"
        'BULWARK_FRONTEND_URL="https://dev.example.com"\n'
        "\n"
    )
    settings = load_settings({"BULWARK_PORT": "9200"}, dotenv=dotenv)
    assert settings.port == 9200  # environment beats .env
    assert settings.host == "0.0.0.0"  # noqa: S104 -- read from .env, quotes stripped
    assert settings.frontend_url == "https://dev.example.com"


def test_dotenv_typos_are_refused_too(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("BULWARK_PROT=9100\n")
    with pytest.raises(SettingsError, match="BULWARK_PROT"):
        load_settings({}, dotenv=dotenv)


CTRADER = {
    "BULWARK_CTRADER_CLIENT_ID": "123_abc",
    "BULWARK_CTRADER_REDIRECT_URI": "https://api.example.com/api/v1/broker-connections/ctrader/callback",
}


def test_production_takes_ctrader_with_tls_urls_and_no_secret_in_the_environment() -> None:
    settings = load({**PRODUCTION, **CTRADER})
    assert settings.ctrader_client_id and not settings.in_process_vault
    message = refusal({**PRODUCTION, **CTRADER, "BULWARK_CTRADER_CLIENT_SECRET": "s3cret"})
    assert "BULWARK_CTRADER_CLIENT_SECRET" in message and "keyring" in message
    missing = dict(CTRADER)
    del missing["BULWARK_CTRADER_REDIRECT_URI"]
    assert "BULWARK_CTRADER_REDIRECT_URI" in refusal({**PRODUCTION, **missing})


@pytest.mark.parametrize(
    ("variable", "plain"),
    [
        ("BULWARK_CTRADER_AUTH_URL", "http://127.0.0.1:9000/apps/auth"),
        ("BULWARK_CTRADER_TOKEN_URL", "http://127.0.0.1:9000/apps/token"),
        ("BULWARK_CTRADER_API_URL", "ws://127.0.0.1:9000"),
        ("BULWARK_CTRADER_DEMO_API_URL", "ws://127.0.0.1:9000"),
    ],
)
def test_plain_ctrader_urls_only_outside_production(variable: str, plain: str) -> None:
    assert getattr(load({variable: plain}), variable.removeprefix("BULWARK_").lower()) == plain
    assert variable in refusal({**PRODUCTION, **CTRADER, variable: plain})
    assert variable in refusal({variable: "ftp://example.com/x"})


def test_the_redirect_uri_defaults_to_this_servers_callback_and_the_vault_is_in_process() -> None:
    settings = load({"BULWARK_HOST": "192.0.2.10", "BULWARK_PORT": "9000"})
    assert settings.effective_ctrader_redirect_uri == (
        "http://192.0.2.10:9000/api/v1/broker-connections/ctrader/callback"
    )
    assert settings.in_process_vault
    assert not load({"BULWARK_VAULT_KEYS_FILE": "/run/secrets/vault.json"}).in_process_vault


def test_egress_defaults_to_the_static_provider_with_an_empty_pool() -> None:
    settings = load({})
    assert settings.egress_provider == "static"
    assert settings.egress_pool_addresses.addresses == ()


def test_the_egress_pool_is_parsed_and_loopback_is_allowed_in_development() -> None:
    settings = load({"BULWARK_EGRESS_POOL": "127.0.0.2, 127.0.0.3"})
    assert settings.egress_pool_addresses.addresses == ("127.0.0.2", "127.0.0.3")


def test_production_refuses_an_egress_pool_that_is_not_globally_routable() -> None:
    message = refusal({**PRODUCTION, "BULWARK_EGRESS_POOL": "5.9.10.0/29,127.0.0.2"})
    assert "BULWARK_EGRESS_POOL" in message and "entry 127.0.0.2" in message
    assert load({**PRODUCTION, "BULWARK_EGRESS_POOL": "5.9.10.0/29"}).egress_pool_addresses.addresses[0] == (
        "5.9.10.1"
    )


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"BULWARK_EGRESS_PROVIDER": "aws"}, "BULWARK_EGRESS_PROVIDER='aws'"),
        ({"BULWARK_EGRESS_POOL": "2001:db8::1"}, "IPv4 only"),
        (
            {"BULWARK_EGRESS_PROVIDER": "hetzner", "BULWARK_EGRESS_HETZNER_DATACENTER": "fsn1-dc14"},
            "BULWARK_EGRESS_HETZNER_SERVER_ID",
        ),
        (
            {"BULWARK_EGRESS_PROVIDER": "hetzner", "BULWARK_EGRESS_HETZNER_SERVER_ID": "42"},
            "BULWARK_EGRESS_HETZNER_DATACENTER",
        ),
        (
            {
                "BULWARK_EGRESS_PROVIDER": "hetzner",
                "BULWARK_EGRESS_HETZNER_SERVER_ID": "42",
                "BULWARK_EGRESS_HETZNER_DATACENTER": "fsn1-dc14",
                "BULWARK_EGRESS_POOL": "127.0.0.2",
            },
            "for the static provider",
        ),
        (
            {
                "BULWARK_EGRESS_PROVIDER": "hetzner",
                "BULWARK_EGRESS_HETZNER_SERVER_ID": "42",
                "BULWARK_EGRESS_HETZNER_DATACENTER": "fsn1-dc14",
                "BULWARK_EGRESS_HETZNER_API_URL": "ftp://x",
            },
            "BULWARK_EGRESS_HETZNER_API_URL",
        ),
    ],
)
def test_bad_egress_settings_are_refused_by_name(environ: dict[str, str], named: str) -> None:
    assert named in refusal(environ)


def test_production_sends_the_hetzner_token_only_over_https() -> None:
    hetzner = {
        "BULWARK_EGRESS_PROVIDER": "hetzner",
        "BULWARK_EGRESS_HETZNER_SERVER_ID": "42",
        "BULWARK_EGRESS_HETZNER_DATACENTER": "fsn1-dc14",
        "BULWARK_EGRESS_HETZNER_API_URL": "http://127.0.0.1:9/v1",
    }
    assert load(hetzner).egress_hetzner_server_id == 42  # a simulator on a laptop
    assert "expected https://" in refusal({**PRODUCTION, **hetzner})


def test_egress_durations_take_units_and_refuse_nonsense() -> None:
    assert parse_duration("egress_cooldown", "7d") == 7 * 86400
    assert parse_duration("egress_cooldown", "12h") == 12 * 3600
    assert parse_duration("egress_cooldown", "900") == 900
    for bad in ("", "-1d", "7 weeks", "nan", "inf", "d"):
        with pytest.raises(SettingsError, match="BULWARK_EGRESS_COOLDOWN"):
            load_settings({"BULWARK_EGRESS_COOLDOWN": bad}, dotenv=Path("/nonexistent"))


def test_production_lets_no_egress_address_change_hands_before_its_credentials_expire() -> None:
    assert load({**PRODUCTION, "BULWARK_EGRESS_COOLDOWN": "300"}).egress_cooldown == "300"
    assert "BULWARK_EGRESS_COOLDOWN" in refusal({**PRODUCTION, "BULWARK_EGRESS_COOLDOWN": "0"})
    assert "BULWARK_EGRESS_COOLDOWN" in refusal({**PRODUCTION, "BULWARK_EGRESS_COOLDOWN": "4m"})
    assert load({"BULWARK_EGRESS_COOLDOWN": "0"}).egress_cooldown == "0"  # development: at once


def test_production_refuses_a_squid_listener_on_a_public_address() -> None:
    assert load({**PRODUCTION, "BULWARK_EGRESS_SQUID_LISTEN": "10.0.0.2:3128"}).egress_squid_listen
    assert "BULWARK_EGRESS_SQUID_LISTEN" in refusal(
        {**PRODUCTION, "BULWARK_EGRESS_SQUID_LISTEN": "5.9.10.1:3128"}
    )
    assert "BULWARK_EGRESS_SQUID_LISTEN" in refusal(
        {**PRODUCTION, "BULWARK_EGRESS_SQUID_LISTEN": "8.8.8.8:3128"}
    )
