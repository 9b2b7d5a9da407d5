"""squid.conf cannot be injected through the settings it is rendered from: a broker target
(BULWARK_EGRESS_BROKER_TARGETS) or Squid's listen address (BULWARK_EGRESS_SQUID_LISTEN) whose host
holds whitespace, a line break, '#', quotes, a macro or any other character that is not part of a
host name is refused with a SettingsError, by the settings check and by the rendering itself, and
`bulwark egress render-squid` writes nothing of it."""

import dataclasses
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from entrypoints.cli import main
from entrypoints.composition import egress_squid_config
from entrypoints.settings import Settings, SettingsError, parse_host_port, validate

MARK = "INJECTED"  # in every hostile host: it must not reach the rendered file
# Hosts that would each change squid.conf's meaning if rendered into `acl ... dstdomain <host>` or
# `http_port <host>:<port>`: a new directive, a second ACL value or port option, a comment, a
# quoted value, a macro Squid expands, a character no host name has.
HOSTILE_HOSTS = [
    f"broker.example.com\nhttp_access allow all {MARK}",
    f"broker.example.com\r\nhttp_access allow all {MARK}",
    f"broker.example.com\rhttp_access allow all {MARK}",
    f"broker.example.com all {MARK}",
    f"broker.example.com\tall{MARK}",
    f"broker.example.com\x0ball{MARK}",
    f"broker.example.com\x0call{MARK}",
    f"broker.example.com\x85all{MARK}",
    f"broker.example.com\u2028all{MARK}",
    f"broker.example.com\x00{MARK}",
    f"broker.example.com#{MARK}",
    f'"broker.example.com {MARK}"',
    f"'broker.example.com {MARK}'",
    f"broker.example.com${{service_name}}{MARK}",
    f"broker.example.com/{MARK}",
    f"broker.example.com\\{MARK}",
    f"broker.example.com;{MARK}",
    f"broker.example.com={MARK}",
    f"127.0.0.1 name=bulwark_manager {MARK}",
    f"[::1\nhttp_access allow all {MARK}]",
]
HOSTILE_TARGETS = [f"{host}:5035" for host in HOSTILE_HOSTS]
HOSTILE_LISTENS = [f"{host}:3128" for host in HOSTILE_HOSTS]
GOOD = Settings(egress_pool="127.0.0.2,127.0.0.3", egress_broker_targets=("live.ctraderapi.com:5035",))


def test_the_good_settings_the_hostile_values_are_put_into_validate_and_render() -> None:
    validate(GOOD)
    rendered = egress_squid_config(GOOD, "bulwark egress squid-helper")
    assert rendered.targets == [("live.ctraderapi.com", 5035)] and rendered.listen == ("127.0.0.1", 3128)


@pytest.mark.parametrize("text", HOSTILE_TARGETS + HOSTILE_LISTENS, ids=repr)
def test_a_host_with_a_config_breaking_character_is_not_a_host(text: str) -> None:
    with pytest.raises(SettingsError, match="is not valid"):
        parse_host_port("egress_broker_targets", text)


@pytest.mark.parametrize("target", HOSTILE_TARGETS, ids=repr)
def test_a_hostile_broker_target_is_refused_by_the_settings_and_by_the_rendering(target: str) -> None:
    hostile = dataclasses.replace(GOOD, egress_broker_targets=("live.ctraderapi.com:5035", target))
    with pytest.raises(SettingsError, match="BULWARK_EGRESS_BROKER_TARGETS"):
        validate(hostile)
    # Settings built in code skip `validate`: the rendering checks again before any line exists.
    with pytest.raises(SettingsError, match="BULWARK_EGRESS_BROKER_TARGETS"):
        egress_squid_config(hostile, "bulwark egress squid-helper")


@pytest.mark.parametrize("listen", HOSTILE_LISTENS, ids=repr)
def test_a_hostile_listen_address_is_refused_by_the_settings_and_by_the_rendering(listen: str) -> None:
    hostile = dataclasses.replace(GOOD, egress_squid_listen=listen)
    with pytest.raises(SettingsError, match="BULWARK_EGRESS_SQUID_LISTEN"):
        validate(hostile)
    with pytest.raises(SettingsError, match="BULWARK_EGRESS_SQUID_LISTEN"):
        egress_squid_config(hostile, "bulwark egress squid-helper")


@pytest.fixture
def bare_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Only what `render-squid` needs, nothing of the test run's BULWARK_* nor a `.env`."""
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("BULWARK_")]:
        monkeypatch.delenv(name)
    return {
        "BULWARK_DATA_DIR": str(tmp_path / "data"),
        "BULWARK_EGRESS_POOL": "127.0.0.2",
        "BULWARK_EGRESS_BROKER_TARGETS": "live.ctraderapi.com:5035",
    }


def render(env: dict[str, str], out: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        main,
        ["egress", "render-squid", "--out", str(out), "--helper-command", "bulwark egress squid-helper"],
        env=env,
    )
    return result.exit_code, result.stdout


def test_render_squid_writes_the_file_from_good_settings(bare_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "squid.conf"
    assert render(bare_env, out)[0] == 0
    assert "acl bulwark_target_0_host dstdomain -n live.ctraderapi.com\n" in out.read_text()


# An environment variable cannot hold NUL: that one is covered by the tests above.
IN_ENVIRONMENT = [host for host in HOSTILE_HOSTS if "\x00" not in host]


@pytest.mark.parametrize(
    ("variable", "value"),
    [("BULWARK_EGRESS_BROKER_TARGETS", f"live.ctraderapi.com:5035,{host}:5035") for host in IN_ENVIRONMENT]
    + [("BULWARK_EGRESS_SQUID_LISTEN", f"{host}:3128") for host in IN_ENVIRONMENT],
    ids=repr,
)
def test_render_squid_writes_nothing_of_a_hostile_setting(
    bare_env: dict[str, str], tmp_path: Path, variable: str, value: str
) -> None:
    out = tmp_path / "squid.conf"
    code, stdout = render({**bare_env, variable: value}, out)
    assert code == 2
    assert not out.exists()
    assert MARK not in stdout and "http_port" not in stdout
