"""Per-address limits count an IPv6 /64 as one address: a host given a /64 could otherwise
spread its requests over 2^64 addresses."""

from domain.address_blocks import address_block


def test_an_ipv4_address_is_its_own_block() -> None:
    assert address_block("203.0.113.7") == "203.0.113.7"
    assert address_block("203.0.113.7") != address_block("203.0.113.8")


def test_every_address_of_an_ipv6_64_is_one_block() -> None:
    one = address_block("2001:db8:1:2::1")
    assert one == "2001:db8:1:2::/64"
    assert address_block("2001:db8:1:2:ffff:ffff:ffff:ffff") == one
    assert address_block("2001:db8:1:3::1") != one


def test_an_ipv4_mapped_address_counts_as_the_ipv4_one() -> None:
    assert address_block("::ffff:203.0.113.7") == "203.0.113.7"


def test_what_is_not_an_address_is_counted_as_it_is() -> None:
    assert address_block("unknown") == "unknown"
