"""What a per-address limit counts: one IPv4 address, or one IPv6 /64 (a single host is routinely
given a whole /64, so counting its addresses one by one would count nothing)."""

import ipaddress


def address_block(ip: str) -> str:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip  # not an address (a test client, "unknown"): counted as it is
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
