"""The cache manager's port serves the cache manager and nothing else: in the rendered squid.conf
its deny comes before any CONNECT is allowed, so even a good proxy login cannot open a tunnel
through it (the real Squid proves the same in tests/e2e/egress_gateway/test_squid_manager_port.py).
The rules are read here the way Squid reads them: the first `http_access` line whose ACLs all
match decides."""

from collections.abc import Mapping

from adapters.egress.squid_config import EgressSquidConfig, render_squid_conf

CONFIG = EgressSquidConfig(
    listen=("10.0.0.2", 3128),
    manager_port=3129,
    addresses=("203.0.113.2", "203.0.113.3"),
    targets=(("live.ctraderapi.com", 5035), ("198.51.100.9", 443)),
    helper_command="/opt/bulwark/bin/bulwark egress squid-helper",
    credentials_ttl_seconds=5,
)


def access_rules() -> list[str]:
    return [line for line in render_squid_conf(CONFIG).splitlines() if line.startswith("http_access ")]


def decision(facts: Mapping[str, bool]) -> str:
    """`allow` or `deny`, from the first rule whose ACLs all match (an unknown ACL is an error:
    the facts below must say what every ACL of the rendered rules is for this request)."""
    for rule in access_rules():
        action, *acls = rule.split()[1:]
        if all(facts[acl.lstrip("!")] != acl.startswith("!") for acl in acls):
            return action
    return "deny"  # Squid's default is the opposite of the last rule; ours ends in `deny all`


def connect_with_a_good_login(on_the_manager_port: bool) -> dict[str, bool]:
    """CONNECT to broker target 0 from loopback, with a login the helper admits."""
    return {
        "all": True,
        "bulwark_manager_port": on_the_manager_port,
        "localhost": True,
        "manager": False,
        "CONNECT": True,
        "bulwark_auth": True,
        "bulwark_pool": True,
        "bulwark_target_0_host": True,
        "bulwark_target_0_port": True,
        "bulwark_target_1_host": False,
        "bulwark_target_1_port": False,
    }


def test_the_manager_ports_deny_comes_before_any_connect_is_allowed() -> None:
    rules = access_rules()
    deny = rules.index("http_access deny bulwark_manager_port")
    connects = [i for i, rule in enumerate(rules) if rule.startswith("http_access allow CONNECT")]
    assert connects and deny < min(connects)
    # Before it, only the cache manager itself is allowed, and only from loopback.
    assert rules[:deny] == ["http_access allow manager bulwark_manager_port localhost"]


def test_a_good_login_cannot_tunnel_through_the_manager_port() -> None:
    assert decision(connect_with_a_good_login(on_the_manager_port=False)) == "allow"
    assert decision(connect_with_a_good_login(on_the_manager_port=True)) == "deny"


def test_the_manager_port_answers_the_cache_manager_from_loopback_only() -> None:
    manager_request = {
        **connect_with_a_good_login(on_the_manager_port=True),
        "CONNECT": False,
        "manager": True,
        "bulwark_auth": False,
    }
    assert decision(manager_request) == "allow"
    assert decision({**manager_request, "localhost": False}) == "deny"
    assert decision({**manager_request, "bulwark_manager_port": False}) == "deny"  # nor on the workers'
