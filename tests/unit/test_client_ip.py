"""The client IP: the socket peer, unless that peer is a trusted proxy."""

from typing import Any

import pytest

from entrypoints.http.client_ip import client_ip, parse_networks

PROXIES = parse_networks(["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"])


def scope(peer: str | None, *forwarded: str) -> dict[str, Any]:
    return {
        "type": "http",
        "client": (peer, 443) if peer else None,
        "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded],
    }


def test_untrusted_peer_ignores_x_forwarded_for() -> None:
    assert client_ip(scope("198.51.100.9", "203.0.113.5"), PROXIES) == "198.51.100.9"


def test_no_trusted_proxies_configured_ignores_x_forwarded_for() -> None:
    assert client_ip(scope("10.1.2.3", "203.0.113.5"), ()) == "10.1.2.3"


def test_trusted_proxy_honours_the_forwarded_client() -> None:
    assert client_ip(scope("10.1.2.3", "203.0.113.5"), PROXIES) == "203.0.113.5"


def test_trusted_proxy_chain_yields_the_right_most_untrusted_hop() -> None:
    # client -> CDN-ish untrusted hop appended by our proxies -> 192.0.2.1 -> 10.1.2.3 (peer)
    assert client_ip(scope("10.1.2.3", "203.0.113.5, 192.0.2.1"), PROXIES) == "203.0.113.5"


def test_spoofed_left_entries_are_ignored() -> None:
    # The client sent "X-Forwarded-For: 1.2.3.4"; our proxy appended the real address.
    assert client_ip(scope("10.1.2.3", "1.2.3.4, 203.0.113.5"), PROXIES) == "203.0.113.5"


def test_several_forwarded_headers_are_read_in_order() -> None:
    assert client_ip(scope("10.1.2.3", "1.2.3.4", "203.0.113.5"), PROXIES) == "203.0.113.5"


@pytest.mark.parametrize("garbage", ["not-an-ip", "1.2.3.4, <script>", "999.1.1.1", "1.2.3.4; rm -rf"])
def test_garbage_falls_back_to_the_peer(garbage: str) -> None:
    assert client_ip(scope("10.1.2.3", garbage), PROXIES) == "10.1.2.3"


def test_only_trusted_hops_fall_back_to_the_peer() -> None:
    assert client_ip(scope("10.1.2.3", "10.9.9.9, 192.0.2.1"), PROXIES) == "10.1.2.3"


def test_empty_header_falls_back_to_the_peer() -> None:
    assert client_ip(scope("10.1.2.3", ""), PROXIES) == "10.1.2.3"


def test_ipv6_trusted_proxy_and_address_is_normalised() -> None:
    assert client_ip(scope("2001:db8::1", "2001:0DB9:0000::0001"), PROXIES) == "2001:db9::1"


def test_missing_socket_peer_is_unknown() -> None:
    assert client_ip(scope(None, "203.0.113.5"), PROXIES) == "unknown"
