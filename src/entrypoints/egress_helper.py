"""`bulwark egress squid-helper`: Squid's basic-auth helper protocol on stdin/stdout, in front of
the AdmitEgress use case. Squid runs it with `concurrency=N`, so every line starts with a
channel-ID and answers may leave in any order; each line is decided as its own task.

    request:  <channel-ID> <username> <password>          (both URL-escaped by Squid)
    answer:   <channel-ID> OK egress_address=<address>    admit; the note selects the address
              <channel-ID> ERR message=<reason>           refused (forged, expired, detached...)
              <channel-ID> BH message=<reason>            the helper itself failed: Squid denies
"""

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import BinaryIO
from urllib.parse import unquote

from application.use_cases.egress_admission import EgressAdmitted, EgressRefused

log = logging.getLogger("bulwark.egress.helper")

NOTE_KEY = "egress_address"  # the note the rendered squid.conf's ACLs match
MAX_LINE = 65536  # Squid sends far less; a longer line is dropped

Admit = Callable[[str, str], Awaitable[EgressAdmitted | EgressRefused]]


async def answer_line(admit: Admit, line: bytes) -> bytes:
    fields = line.decode("utf-8", "replace").strip().split(" ")
    channel = fields[0]
    if not channel.isdigit():
        return b"BH message=expected-a-channel-ID\n"
    if len(fields) != 3:
        return f"{channel} ERR message=malformed\n".encode()
    try:
        decided = await admit(unquote(fields[1]), unquote(fields[2]))
    except Exception:
        log.exception("egress admission failed")
        return f"{channel} BH message=lookup-failed\n".encode()
    if isinstance(decided, EgressAdmitted):
        return f"{channel} OK {NOTE_KEY}={decided.address}\n".encode()
    return f"{channel} ERR message={decided.reason.value}\n".encode()


async def serve(admit: Admit, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
    """Until Squid closes stdin. Each answer is written whole as soon as it is decided.

    Answers are plain blocking writes: Squid may hand a helper one socket as both stdin and
    stdout, and an asyncio write transport on it would take Squid's next request for the
    peer closing the pipe."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin or sys.stdin.buffer)
    out = stdout or sys.stdout.buffer
    pending: set[asyncio.Task[None]] = set()
    flushing = False

    def flush() -> None:
        nonlocal flushing
        flushing = False
        out.flush()

    async def one(line: bytes) -> None:
        nonlocal flushing
        out.write(await answer_line(admit, line))
        if not flushing:  # the answers decided in one turn of the loop leave in one write
            flushing = True
            loop.call_soon(flush)

    while True:
        try:
            line = await reader.readline()
        except ValueError:  # longer than any honest login, its channel unknown: dropped
            log.warning("a helper line over %d bytes was dropped", MAX_LINE)
            continue
        if not line:
            break
        if not line.strip():
            continue
        task = asyncio.create_task(one(line))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    out.flush()
