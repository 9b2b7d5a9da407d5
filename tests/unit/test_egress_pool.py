"""BULWARK_EGRESS_POOL: IPv4 blocks and addresses, each refusal naming the entry at fault."""

import pytest

from domain.egress_pool import MAX_POOL_ADDRESSES, EgressPoolError, parse_egress_pool


def refusal(text: str, *, production: bool = True) -> str:
    with pytest.raises(EgressPoolError) as raised:
        parse_egress_pool(text, production=production)
    return str(raised.value)


def test_blocks_and_single_addresses_give_their_usable_addresses_in_order() -> None:
    pool = parse_egress_pool(" 5.9.10.0/29 , 88.99.1.7,", production=True)
    # /29: .0 (network) and .7 (broadcast) left out
    assert pool.addresses == (*(f"5.9.10.{n}" for n in range(1, 7)), "88.99.1.7")
    assert "88.99.1.7" in pool and "5.9.10.0" not in pool and len(pool) == 7


def test_a_31_and_a_32_give_every_address() -> None:
    assert parse_egress_pool("5.9.10.6/31,5.9.10.9/32", production=True).addresses == (
        "5.9.10.6",
        "5.9.10.7",
        "5.9.10.9",
    )


def test_a_30_leaves_out_network_and_broadcast() -> None:
    assert parse_egress_pool("5.9.10.4/30", production=True).addresses == ("5.9.10.5", "5.9.10.6")


def test_empty_text_is_an_empty_pool() -> None:
    assert parse_egress_pool("", production=True).addresses == ()
    assert parse_egress_pool(" , ", production=False).addresses == ()


@pytest.mark.parametrize(
    ("text", "named", "why"),
    [
        ("5.9.10.0/29,2001:db8::1", "2001:db8::1", "IPv4 only"),
        ("5.9.10.0/29,2001:db8::/64", "2001:db8::/64", "IPv4 only"),
        ("5.9.10.3/29", "5.9.10.3/29", "network address (5.9.10.0/29)"),
        ("5.9.10.1,not-an-ip", "'not-an-ip'", "expected an IPv4 address"),
        ("5.9.10.1,5.9.10.300", "'5.9.10.300'", "expected an IPv4 address"),
        ("5.9.10.1,10.1.2.3", "10.1.2.3", "refused in production"),
        ("192.168.0.0/30", "192.168.0.1 (in 192.168.0.0/30)", "refused in production"),
        ("172.16.5.5", "172.16.5.5", "refused in production"),
        ("100.64.0.9", "100.64.0.9", "shared address space"),
        ("127.0.0.2", "127.0.0.2", "loopback"),
        ("203.0.113.0/28", "203.0.113.1 (in 203.0.113.0/28)", "documentation"),
        ("198.51.100.7", "198.51.100.7", "refused in production"),
        ("169.254.1.1", "169.254.1.1", "link-local"),
        ("224.0.0.5", "224.0.0.5", "multicast"),
        ("240.0.0.1", "240.0.0.1", "reserved"),
        ("255.255.255.255", "255.255.255.255", "reserved"),
        ("0.0.0.9", "0.0.0.9", "0.0.0.0/8"),
        ("5.9.10.1,5.9.10.0/30", "5.9.10.0/30 repeats 5.9.10.1", "already given by 5.9.10.1"),
        ("5.0.0.0/16", "5.0.0.0/16", f"larger than {MAX_POOL_ADDRESSES}"),
    ],
)
def test_production_refuses_an_unusable_entry_and_names_it(text: str, named: str, why: str) -> None:
    message = refusal(text)
    assert f"entry {named}" in message and why in message


def test_many_small_entries_cannot_add_up_past_the_cap() -> None:
    blocks = ",".join(f"5.{n}.0.0/22" for n in range(5))  # 5 x 1022 addresses
    assert f"past {MAX_POOL_ADDRESSES}" in refusal(blocks)


def test_outside_production_loopback_private_and_documentation_ranges_are_allowed() -> None:
    pool = parse_egress_pool("127.0.0.2,127.0.0.3,10.0.0.0/30,203.0.113.0/30,198.51.100.7", production=False)
    assert pool.addresses == (
        "127.0.0.2",
        "127.0.0.3",
        "10.0.0.1",
        "10.0.0.2",
        "203.0.113.1",
        "203.0.113.2",
        "198.51.100.7",
    )


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("127.0.0.1", "shared by every program"),
        ("127.0.0.0/30", "shared by every program"),  # its first host is 127.0.0.1
        ("224.0.0.5", "multicast"),
        ("169.254.1.1", "link-local"),
        ("240.0.0.1", "reserved"),
        ("0.1.2.3", "0.0.0.0/8"),
        ("::1", "IPv4 only"),
    ],
)
def test_some_addresses_are_never_a_source_even_in_development(text: str, why: str) -> None:
    assert why in refusal(text, production=False)
