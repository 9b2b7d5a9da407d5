"""argon2id password hashing with a versioned server-side pepper.

Stored hash = argon2id(HMAC-SHA-256(pepper[v], NFKC(password)), random salt), with the argon2
parameters inside the PHC string and the pepper version `v` in its own column. A database thief
without the pepper (kept by the KeyProvider, outside the database) cannot even start guessing.
All argon2 work runs in a thread pool: argon2-cffi releases the GIL, so the event loop keeps
serving while hashes run, and a bounded pool bounds the memory that concurrent hashes take."""

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.low_level import ARGON2_VERSION

from application.ports.key_provider import KeyProvider
from application.ports.password_hasher import PasswordCheck
from domain.password_policy import normalise_password

# Chosen with bench/argon2_params.py on the 2-core machine, with the hash memory kept mapped
# (hash_memory.py): ~75 ms per hash, as t=2 took before that (docs/performance.md, argon2id parameters).
DEFAULT_TIME_COST = 3
DEFAULT_MEMORY_COST_KIB = 46 * 1024
DEFAULT_PARALLELISM = 1

# OWASP Password Storage Cheat Sheet minimum for argon2id (m=19 MiB, t=2, p=1).
FLOOR_TIME_COST = 2
FLOOR_MEMORY_COST_KIB = 19 * 1024
FLOOR_PARALLELISM = 1

_HASH_LEN = 32
_SALT_LEN = 16

_T = TypeVar("_T")


class Argon2PasswordHasher:
    """Implements application.ports.password_hasher.PasswordHasher."""

    def __init__(
        self,
        key_provider: KeyProvider,
        *,
        time_cost: int = DEFAULT_TIME_COST,
        memory_cost_kib: int = DEFAULT_MEMORY_COST_KIB,
        parallelism: int = DEFAULT_PARALLELISM,
        executor: ThreadPoolExecutor | None = None,
        pepper_purpose: str = "",
    ) -> None:
        """`pepper_purpose` names what the hashes are for (e.g. "admin-password"): each purpose
        peppers with its own key derived from the pepper, so a hash of one purpose never verifies
        as another's, even for the same password. Empty: the pepper itself (user passwords)."""
        if time_cost < FLOOR_TIME_COST:
            raise ValueError(f"argon2 time_cost {time_cost} is below the floor of {FLOOR_TIME_COST}")
        if memory_cost_kib < FLOOR_MEMORY_COST_KIB:
            raise ValueError(
                f"argon2 memory_cost_kib {memory_cost_kib} is below the floor of {FLOOR_MEMORY_COST_KIB}"
            )
        if parallelism < FLOOR_PARALLELISM:
            raise ValueError(f"argon2 parallelism {parallelism} is below the floor of {FLOOR_PARALLELISM}")
        self._keys = key_provider
        self._purpose = pepper_purpose.encode()
        self._parameters = argon2.Parameters(
            type=argon2.Type.ID,
            version=ARGON2_VERSION,
            salt_len=_SALT_LEN,
            hash_len=_HASH_LEN,
            time_cost=time_cost,
            memory_cost=memory_cost_kib,
            parallelism=parallelism,
        )
        self._argon2 = argon2.PasswordHasher.from_parameters(self._parameters)
        # Our own pool, one worker per core, unless the caller shares one: more concurrent
        # hashes than cores only adds memory (memory_cost each) and latency, not throughput.
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=os.cpu_count() or 2, thread_name_prefix="argon2"
        )
        # Made on the first burn() (by hashing, which costs the same as verifying).
        self._dummy_hash: str | None = None

    @property
    def parameters(self) -> argon2.Parameters:
        """The parameters new hashes get (and that needs_rehash compares against)."""
        return self._parameters

    def close(self) -> None:
        """Shut down the pool if this hasher created it (a shared executor is the caller's)."""
        if self._owns_executor:
            self._executor.shutdown(wait=True)

    async def _run(self, work: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    def _peppered(self, password: str, pepper_version: str) -> bytes:
        # HMAC first: the argon2 input is a fixed 32 bytes whatever the password length, and
        # worthless without the pepper. KeyUnavailableError (retired/unknown version) propagates.
        pepper = self._keys.pepper(pepper_version)
        if self._purpose:
            pepper = hmac.digest(pepper, b"bulwark-pepper-purpose|" + self._purpose, hashlib.sha256)
        return hmac.digest(pepper, normalise_password(password).encode("utf-8"), hashlib.sha256)

    async def hash(self, password: str) -> tuple[str, str]:
        version = self._keys.active_pepper_version()
        secret = self._peppered(password, version)
        return await self._run(lambda: self._argon2.hash(secret)), version

    async def verify(self, password: str, stored_hash: str, pepper_version: str) -> PasswordCheck:
        secret = self._peppered(password, pepper_version)

        def work() -> bool:
            try:
                return self._argon2.verify(stored_hash, secret)
            except VerifyMismatchError:
                return False
            except (InvalidHashError, VerificationError):
                # Corrupt or placeholder hash (e.g. an account without a password): fail closed,
                # after the same work as a real check so it is not told apart by timing.
                self._burn_sync(password)
                return False

        if not await self._run(work):
            return PasswordCheck(valid=False, needs_rehash=False)
        needs_rehash = (
            pepper_version != self._keys.active_pepper_version()
            or self._argon2.check_needs_rehash(stored_hash)
        )
        return PasswordCheck(valid=True, needs_rehash=needs_rehash)

    def _burn_sync(self, password: str) -> None:
        secret = self._peppered(password, self._keys.active_pepper_version())
        if self._dummy_hash is None:
            # A random secret nobody knows: the dummy can never match a real password.
            self._dummy_hash = self._argon2.hash(secrets.token_bytes(_HASH_LEN))
            return
        with contextlib.suppress(VerifyMismatchError):
            self._argon2.verify(self._dummy_hash, secret)

    async def burn(self, password: str) -> None:
        await self._run(lambda: self._burn_sync(password))
