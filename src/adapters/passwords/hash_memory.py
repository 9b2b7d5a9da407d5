"""Keep argon2's memory in the process between hashes (glibc only).

glibc serves any allocation above its mmap threshold (at most 32 MiB) with a fresh mmap and
gives it back with munmap on free. argon2id with the default 46 MiB therefore page-faults its
whole memory in on every hash: about 11,800 faults and a third of the hash's CPU time, spent in
the kernel, where the worker's event loop also waits on the process's memory-map lock. With
mmap chunks off and a trim threshold above the hash memory, the freed block stays in the
hashing thread's heap and the next hash reuses it, already mapped.

A hashing thread allocates from its own glibc heap, of 64 MiB at most: a hash memory above about
63 MiB still gets an mmap of its own (glibc's fallback ignores M_MMAP_MAX), so it keeps paying
the faults; everything else still works.

argon2 wipes its memory before freeing it (clear_internal_memory), so keeping the block does
not keep any password-derived data. The cost is that the heap keeps its high-water mark, which
is bounded here by the hashing threads times the hash memory."""

import ctypes
import logging
import sys

log = logging.getLogger("bulwark.passwords")

# mallopt(3) parameter numbers, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    # musl (Alpine) has a mallopt that does nothing; only glibc has this one.
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    return libc


def keep_hash_memory(memory_cost_kib: int) -> bool:
    """Make freed blocks of up to twice `memory_cost_kib` stay mapped for the next hash.
    Process-wide; True when applied, False where the C library is not glibc."""
    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    trim_threshold = min(2 * memory_cost_kib * 1024, 2**31 - 1)
    applied: bool = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1
    if not applied:
        log.warning("mallopt refused the argon2 memory settings; every hash will map its memory anew")
    return applied
