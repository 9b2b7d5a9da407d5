"""Logins flat out, counted in a steady-state window (bench/run.py compares them with the argon2
ceiling).

wrk counts the requests it completes over its whole run. For logins that is a biased figure: the
first answers only arrive once the server's first hashes finish, and the hashes in flight when
wrk stops are lost. Over a 10 s run that costs about 1 %; over the short slices needed to
interleave logins with the ceiling (the VM's speed drifts between them) it would cost several
per cent. So this load keeps every connection busy from the start, counts only the answers that
arrive inside a window opened after a warm-up, and then lets the requests in flight finish.

A plain asyncio HTTP/1.1 client with pre-built requests: at a few dozen logins a second it uses
well under 1 % of one core, as little as wrk would."""

import asyncio
import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class LoginWindow:
    succeeded: int  # 200 answers that arrived inside the window
    failed: int  # any other answer, inside the window or not
    seconds: float


def login_requests(base: str, origin: str, accounts: list[tuple[str, str]]) -> list[bytes]:
    """One complete request per account, as wrk's login script sends them."""
    host = urlsplit(base).netloc
    requests = []
    for address, password in accounts:
        body = json.dumps({"email": address, "password": password}, separators=(",", ":")).encode()
        head = (
            f"POST /api/v1/auth/login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Origin: {origin}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


async def _status_of_answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    length = _CONTENT_LENGTH.search(head)
    if length is None:
        raise RuntimeError(f"answer without Content-Length: {head[:200]!r}")
    await reader.readexactly(int(length.group(1)))
    return int(head[9:12])


async def _logins(
    base: str, requests: list[bytes], connections: int, warmup: float, seconds: float
) -> LoginWindow:
    target = urlsplit(base)
    loop = asyncio.get_running_loop()
    opens = loop.time() + warmup
    closes = opens + seconds
    succeeded = failed = 0

    async def connection(number: int) -> None:
        nonlocal succeeded, failed
        reader, writer = await asyncio.open_connection(target.hostname, target.port)
        index = number * 7919  # spread the accounts over the connections, as the wrk script does
        try:
            while loop.time() < closes:
                writer.write(requests[index % len(requests)])
                index += 1
                status = await _status_of_answer(reader)
                if status != 200:
                    failed += 1
                elif opens <= loop.time() < closes:
                    succeeded += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection(n) for n in range(connections)))
    return LoginWindow(succeeded, failed, seconds)


def steady_logins(
    base: str, requests: list[bytes], *, connections: int, warmup: float, seconds: float
) -> LoginWindow:
    """Logins on `connections` keep-alive connections; the answers counted are those arriving in
    the `seconds` after `warmup`. Returns once the requests in flight have been answered."""
    return asyncio.run(_logins(base, requests, connections, warmup, seconds))
