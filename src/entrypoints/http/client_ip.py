"""The client's IP address: the one function rate limiting, audit and admin allowlisting use."""

import ipaddress
from collections.abc import Iterable
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip())


def _is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_ip(scope: Any, trusted_proxies: tuple[Network, ...]) -> str:
    """The socket peer, unless it is a trusted proxy: then the right-most X-Forwarded-For entry
    that is not itself a trusted proxy (entries left of it are client-controlled). A chain the
    proxy garbled counts as the proxy itself (for limits, its clients share one budget)."""
    client = scope.get("client")
    peer = str(client[0] if client else "unknown")
    return forwarded_client(scope, trusted_proxies) or peer


def forwarded_client(scope: Any, trusted_proxies: tuple[Network, ...]) -> str | None:
    """`client_ip`, or None when a trusted proxy forwarded a chain that cannot be read: whoever
    grants access by address (the admin allowlist) must not take the proxy's own address then."""
    client = scope.get("client")
    peer = client[0] if client else "unknown"
    if not trusted_proxies or not _is_trusted(peer, trusted_proxies):
        return str(peer)
    forwarded: list[str] = []
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-for":
            forwarded.extend(part.strip() for part in value.decode("latin-1").split(","))
    for hop in reversed([hop for hop in forwarded if hop]):
        if not _is_trusted(hop, trusted_proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return None  # garbage in the header: do not trust any of it
    return str(peer)
