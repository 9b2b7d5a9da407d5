"""Which addresses the egress host can send from: the kernel's `local` routing table (iproute2,
`ip -4 -j route show table local`). An address Squid is told to use but the host does not hold
fails every tunnel of its user, so the orphan audit reports it as broken. Reading needs no
privilege; like the tunnel cutter, it answers for the host it runs on, the egress host."""

import asyncio
import ipaddress
import json
from collections.abc import Sequence


class HostAddressesUnreadable(Exception):
    pass


def local_networks(route_json: str) -> list[ipaddress.IPv4Network]:
    """The `local` routes of `ip -4 -j route show table local`: a single address or a whole block
    (127.0.0.0/8 on lo, or a routed block an operator made local with `ip route add local`)."""
    try:
        routes = json.loads(route_json or "[]")
        return [
            ipaddress.IPv4Network(route["dst"], strict=False)
            for route in routes
            if route.get("type") == "local" and route.get("dst") not in (None, "default")
        ]
    except (ValueError, TypeError, KeyError) as error:
        raise HostAddressesUnreadable(f"ip route: unreadable answer ({error})") from error


class IpRouteHostAddresses:
    async def not_local(self, addresses: Sequence[str]) -> list[str]:
        process = await asyncio.create_subprocess_exec(
            "ip",
            "-4",
            "-j",
            "route",
            "show",
            "table",
            "local",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        if process.returncode != 0:
            raise HostAddressesUnreadable(f"ip route: {err.decode(errors='replace').strip()}")
        networks = local_networks(out.decode(errors="replace"))
        return [a for a in addresses if not any(ipaddress.IPv4Address(a) in n for n in networks)]
