"""Cutting tunnels on the egress host with the kernel's socket-destroy (`ss -K`, iproute2): every
TCP socket whose local address is the pool address is closed, which makes Squid end the tunnel
on both sides. The address is exclusive to one user, so nothing else is touched. Needs
CAP_NET_ADMIN (Squid's own cache manager has no way to close one connection)."""

import asyncio


class TunnelCutFailed(Exception):
    pass


async def _ss(*args: str) -> str:
    try:
        process = await asyncio.create_subprocess_exec(
            "ss", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except OSError as error:  # iproute2 missing: nothing can be cut nor counted
        raise TunnelCutFailed(f"ss {' '.join(args)}: {error}") from error
    out, err = await process.communicate()
    if process.returncode != 0:
        raise TunnelCutFailed(f"ss {' '.join(args)}: {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")


def _sockets(listing: str) -> int:
    return sum(1 for line in listing.splitlines() if line.strip())


class SsTunnelCutter:
    async def cut(self, address: str) -> None:
        await _ss("-K", "-t", "-n", "src", address)

    async def open_from(self, address: str) -> int:
        """Established TCP connections still leaving from the address."""
        return _sockets(await _ss("-t", "-n", "-H", "state", "established", "src", address))
