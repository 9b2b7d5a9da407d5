"""The operator's routed IPv4 block(s) for dedicated egress, as `BULWARK_EGRESS_POOL` gives them:
comma-separated CIDR blocks and single addresses, e.g. `203.0.113.0/28,198.51.100.7`.

Rules, each refusal naming the entry at fault:
- IPv4 only (brokers and prop firms key on IPv4 sources; an IPv6 egress would be a second identity).
- A block is written with its network address (`203.0.113.5/28` is more likely a typo than a wish).
- In a block of /30 or larger the network and broadcast addresses are left out: on an on-link
  subnet they cannot be a host's source, and on a routed block many peers' filters still drop
  `.0`/`.255`-style sources. A /31 (RFC 3021) and a /32 give every address.
- Never usable as a source, in any mode: unspecified (0/8), multicast, link-local, the limited
  broadcast, 240/4 (reserved) and 127.0.0.1 (every local program's address, so never exclusive).
- Production: every address must be globally routable (no private, shared 100.64/10, loopback,
  benchmarking or documentation ranges). Outside production loopback 127.0.0.2+ and private or
  documentation ranges are allowed, because tests and labs use them.
- An address given twice (or inside two entries) is refused: the pool is a set, and a repeat
  is a sign the operator meant something else.
- At most MAX_POOL_ADDRESSES addresses: a typo like `/8` must not become sixteen million rows."""

import ipaddress
from dataclasses import dataclass

MAX_POOL_ADDRESSES = 4096  # a /20; far beyond any real routed egress block
_LOCALHOST = ipaddress.IPv4Address("127.0.0.1")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")


class EgressPoolError(ValueError):
    """The pool text is not valid; the message names the entry and the rule it breaks."""


@dataclass(frozen=True)
class EgressPool:
    addresses: tuple[str, ...]  # dotted IPv4, in the order given, each once

    def __contains__(self, address: object) -> bool:
        return address in self.addresses

    def __len__(self) -> int:
        return len(self.addresses)


def parse_egress_pool(text: str, *, production: bool) -> EgressPool:
    seen: dict[ipaddress.IPv4Address, str] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        for address in _expand(entry):
            problem = unusable_reason(address, production=production)
            if problem:
                shown = entry if str(address) == entry else f"{address} (in {entry})"
                raise EgressPoolError(f"entry {shown} is {problem}")
            if address in seen:
                raise EgressPoolError(f"entry {entry} repeats {address}, already given by {seen[address]}")
            seen[address] = entry
            if len(seen) > MAX_POOL_ADDRESSES:
                raise EgressPoolError(
                    f"entry {entry} takes the pool past {MAX_POOL_ADDRESSES} addresses (a typo in a prefix?)"
                )
    return EgressPool(tuple(str(address) for address in seen))


def _expand(entry: str) -> list[ipaddress.IPv4Address]:
    try:
        network = ipaddress.ip_network(entry, strict=True)
    except ValueError as error:
        if "/" in entry and "has host bits set" in str(error):
            raise EgressPoolError(
                f"entry {entry} is not valid: a block is written with its network address "
                f"({ipaddress.ip_network(entry, strict=False)})"
            ) from None
        raise EgressPoolError(
            f"entry {entry!r} is not valid: expected an IPv4 address or CIDR block such as 203.0.113.0/28"
        ) from None
    if not isinstance(network, ipaddress.IPv4Network):
        raise EgressPoolError(f"entry {entry} is not valid: IPv4 only")
    if network.num_addresses > MAX_POOL_ADDRESSES:
        raise EgressPoolError(
            f"entry {entry} is larger than {MAX_POOL_ADDRESSES} addresses (a typo in a prefix?)"
        )
    if network.prefixlen >= 31:
        return list(network)  # /31 point-to-point (RFC 3021) and /32: every address is a host
    return list(network.hosts())


def unusable_reason(address: ipaddress.IPv4Address, *, production: bool) -> str:
    """Why the address cannot be a dedicated egress source, or "" when it can."""
    if address == _LOCALHOST:
        return "127.0.0.1, shared by every program on the host (use 127.0.0.2 and up in tests)"
    if address.is_unspecified or int(address) >> 24 == 0:
        return "in 0.0.0.0/8 (this network), never a source address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_link_local:
        return "a link-local address (169.254.0.0/16)"
    if address == ipaddress.IPv4Address("255.255.255.255") or address.is_reserved:
        return "in a reserved range (240.0.0.0/4)"
    if not production or address.is_global:
        return ""
    if address.is_loopback:
        return "a loopback address, refused in production"
    if address in _SHARED:
        return "in the shared address space 100.64.0.0/10, refused in production"
    return "not globally routable (private, benchmarking or documentation range), refused in production"
