"""Run password hashing below the event loop's CPU priority (Linux only).

argon2 is throughput work: a hash takes ~100 ms of one core whenever it runs. At equal priority
the kernel slices the cores evenly between the hashing threads and the event loops, so during a
login burst every other request (and every step of the logins themselves: their round trips,
their tokens) waits behind argon2 slices. A hashing thread a few nice levels down yields the core
as soon as the loop has work and takes all the time it leaves idle, so logins lose nothing while
the loop stays responsive. It is not starved either: against one busy nice-0 thread a thread at
+5 still gets a quarter of the core (CFS weights 335 against 1024). Further down it would be:
+10 gets a tenth, and a reviewer's run with the cores flooded by other work finished 6-8 hashes
in 8 s at +10 against ~50 at 0 (none at +19), which would let a flood of cheap requests time
logins out.

Linux keeps a nice value per thread (`setpriority` on a thread id), so only the calling thread
moves. Elsewhere a pid-shaped id could name another process: nothing is changed there."""

import logging
import os
import sys
import threading

log = logging.getLogger("bulwark.passwords")

MAX_NICE = 19


def lower_this_thread(increment: int) -> bool:
    """Move the calling thread `increment` nice levels below where it runs now (capped at 19).
    True when it moved; False when there was nothing to do or the system refused."""
    if increment <= 0 or not sys.platform.startswith("linux"):
        return False
    thread = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, thread)
        target = min(MAX_NICE, current + increment)
        if target == current:
            return False
        os.setpriority(os.PRIO_PROCESS, thread, target)
    except OSError as error:  # e.g. a sandbox that filters setpriority: hash at normal priority
        log.warning("password hashing keeps the normal CPU priority: %s", error)
        return False
    return True
