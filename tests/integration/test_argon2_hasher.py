"""Argon2PasswordHasher against the real argon2-cffi library, with floor-level (fast) params."""

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import argon2
import pytest
from argon2.exceptions import VerifyMismatchError

from adapters.passwords.argon2_hasher import Argon2PasswordHasher
from application.ports.key_provider import KeyUnavailableError, SigningKey, WrappedKey
from application.ports.password_hasher import PasswordCheck

FAST: dict[str, Any] = {"time_cost": 2, "memory_cost_kib": 19 * 1024, "parallelism": 1}
PASSWORD = "correct horse battery staple"


class FakePeppers:
    """Just the pepper part of a KeyProvider: peppers are plain bytes, nothing to fake there."""

    def __init__(self, peppers: dict[str, bytes], active: str) -> None:
        self.peppers = dict(peppers)
        self.active = active

    def pepper(self, version: str) -> bytes:
        try:
            return self.peppers[version]
        except KeyError:
            raise KeyUnavailableError(f"unknown pepper version {version}") from None

    def active_pepper_version(self) -> str:
        return self.active

    def active_master_key_id(self) -> str:
        raise NotImplementedError

    async def wrap(self, data_key: bytes, context: bytes) -> WrappedKey:
        raise NotImplementedError

    async def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        raise NotImplementedError

    def signing_keys(self) -> list[SigningKey]:
        raise NotImplementedError

    @property
    def generated(self) -> bool:
        return True


@pytest.fixture
def keys() -> FakePeppers:
    return FakePeppers({"p1": b"\x01" * 32, "p2": b"\x02" * 32}, active="p1")


@pytest.fixture
def hasher(keys: FakePeppers) -> Iterator[Argon2PasswordHasher]:
    h = Argon2PasswordHasher(keys, **FAST)
    yield h
    h.close()


class Argon2Spy:
    """Records every real argon2 hash/verify call (calls through to the library)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, argon2.Parameters | None, int]] = []
        real_hash = argon2.PasswordHasher.hash
        real_verify = argon2.PasswordHasher.verify
        spy = self

        def hash_(self: argon2.PasswordHasher, password: Any, **kw: Any) -> str:
            result = real_hash(self, password, **kw)
            spy.calls.append(("hash", argon2.extract_parameters(result), threading.get_ident()))
            return result

        def verify(self: argon2.PasswordHasher, stored: Any, password: Any) -> bool:
            try:
                params: argon2.Parameters | None = argon2.extract_parameters(stored)
            except argon2.exceptions.InvalidHashError:
                params = None
            spy.calls.append(("verify", params, threading.get_ident()))
            return real_verify(self, stored, password)

        monkeypatch.setattr(argon2.PasswordHasher, "hash", hash_)
        monkeypatch.setattr(argon2.PasswordHasher, "verify", verify)


async def test_hash_then_verify_round_trips_with_active_pepper(hasher: Argon2PasswordHasher) -> None:
    stored, version = await hasher.hash(PASSWORD)
    assert version == "p1"
    assert stored.startswith("$argon2id$")
    check = await hasher.verify(PASSWORD, stored, version)
    assert check.valid
    assert not check.needs_rehash


async def test_wrong_password_fails_verification(hasher: Argon2PasswordHasher) -> None:
    stored, version = await hasher.hash(PASSWORD)
    for wrong in ("correct horse battery stapl", "Correct horse battery staple", ""):
        check = await hasher.verify(wrong, stored, version)
        assert not check.valid
        assert not check.needs_rehash


async def test_full_width_spelling_verifies_like_ascii(hasher: Argon2PasswordHasher) -> None:
    stored, version = await hasher.hash("password-1234567")
    full_width = "".join(chr(0xFF00 + ord(c) - 0x20) for c in "password-1234567")  # U+FF50...
    assert (await hasher.verify(full_width, stored, version)).valid


async def test_stored_hash_verifies_only_with_the_right_pepper(hasher: Argon2PasswordHasher) -> None:
    stored, version = await hasher.hash(PASSWORD)
    # Same version name, different pepper bytes (e.g. a thief guessing the pepper): no match.
    other = Argon2PasswordHasher(FakePeppers({"p1": b"\x09" * 32}, active="p1"), **FAST)
    try:
        assert not (await other.verify(PASSWORD, stored, version)).valid
    finally:
        other.close()
    # The right password under another existing pepper version: no match either.
    assert not (await hasher.verify(PASSWORD, stored, "p2")).valid


def test_database_thief_without_pepper_cannot_verify_plain_password(hasher: Argon2PasswordHasher) -> None:
    stored, _ = asyncio.run(hasher.hash(PASSWORD))
    # Offline attack with the hash alone: argon2 over the plain password does not match.
    with pytest.raises(VerifyMismatchError):
        argon2.PasswordHasher().verify(stored, PASSWORD)


async def test_same_password_gets_a_different_salt_each_time(hasher: Argon2PasswordHasher) -> None:
    first, _ = await hasher.hash(PASSWORD)
    second, _ = await hasher.hash(PASSWORD)
    assert first != second
    # $argon2id$v=19$m=..,t=..,p=..$<salt>$<hash>
    assert first.split("$")[4] != second.split("$")[4]
    assert (await hasher.verify(PASSWORD, first, "p1")).valid
    assert (await hasher.verify(PASSWORD, second, "p1")).valid


async def test_hash_string_carries_the_configured_parameters(keys: FakePeppers) -> None:
    h = Argon2PasswordHasher(keys, time_cost=3, memory_cost_kib=20 * 1024, parallelism=2)
    try:
        stored, _ = await h.hash(PASSWORD)
    finally:
        h.close()
    params = argon2.extract_parameters(stored)
    assert (params.type, params.time_cost, params.memory_cost, params.parallelism) == (
        argon2.Type.ID,
        3,
        20 * 1024,
        2,
    )


async def test_needs_rehash_after_parameter_change(keys: FakePeppers, hasher: Argon2PasswordHasher) -> None:
    stored, version = await hasher.hash(PASSWORD)
    stronger = Argon2PasswordHasher(keys, time_cost=3, memory_cost_kib=19 * 1024, parallelism=1)
    try:
        check = await stronger.verify(PASSWORD, stored, version)
        assert check.valid
        assert check.needs_rehash
        # A wrong password never asks for a rehash (it must not trigger a write).
        assert not (await stronger.verify("nope nope nope nope", stored, version)).needs_rehash
        rehashed, _ = await stronger.hash(PASSWORD)
        assert not (await stronger.verify(PASSWORD, rehashed, version)).needs_rehash
    finally:
        stronger.close()


async def test_needs_rehash_after_pepper_rotation(keys: FakePeppers, hasher: Argon2PasswordHasher) -> None:
    stored, version = await hasher.hash(PASSWORD)
    keys.active = "p2"
    check = await hasher.verify(PASSWORD, stored, version)
    assert check.valid  # the old pepper still verifies ...
    assert check.needs_rehash  # ... but asks to be moved to the active one
    rehashed, new_version = await hasher.hash(PASSWORD)
    assert new_version == "p2"
    assert (await hasher.verify(PASSWORD, rehashed, "p2")) == PasswordCheck(valid=True, needs_rehash=False)


async def test_unknown_pepper_version_is_an_error_not_a_silent_mismatch(
    hasher: Argon2PasswordHasher,
) -> None:
    stored, _ = await hasher.hash(PASSWORD)
    with pytest.raises(KeyUnavailableError):
        await hasher.verify(PASSWORD, stored, "retired")


@pytest.mark.parametrize(
    "params",
    [
        {"time_cost": 1, "memory_cost_kib": 64 * 1024, "parallelism": 1},
        {"time_cost": 2, "memory_cost_kib": 19 * 1024 - 1, "parallelism": 1},
        {"time_cost": 2, "memory_cost_kib": 19 * 1024, "parallelism": 0},
    ],
)
def test_parameters_below_owasp_floor_are_refused(keys: FakePeppers, params: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="below the floor"):
        Argon2PasswordHasher(keys, **params)


def test_defaults_are_stronger_than_the_floor(keys: FakePeppers) -> None:
    h = Argon2PasswordHasher(keys)
    try:
        p = h.parameters
        assert p.type is argon2.Type.ID
        assert p.memory_cost > 19 * 1024 and p.time_cost >= 2 and p.parallelism >= 1
    finally:
        h.close()


async def test_burn_does_a_real_argon2_verification_with_current_params(
    hasher: Argon2PasswordHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored, version = await hasher.hash(PASSWORD)
    spy = Argon2Spy(monkeypatch)

    await hasher.verify(PASSWORD, stored, version)
    (real_call,) = spy.calls
    spy.calls.clear()

    await hasher.burn(PASSWORD)  # first burn: makes the dummy hash (costs one argon2 hash)
    await hasher.burn(PASSWORD)
    await hasher.burn("another unknown user's guess")
    kinds = [kind for kind, _, _ in spy.calls]
    assert kinds == ["hash", "verify", "verify"]
    # Every burn step ran argon2 with exactly the parameters a real user's check runs with.
    assert all(params == real_call[1] == hasher.parameters for _, params, _ in spy.calls)


async def test_corrupt_stored_hash_fails_closed_after_real_work(
    hasher: Argon2PasswordHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    await hasher.burn(PASSWORD)  # dummy ready
    spy = Argon2Spy(monkeypatch)
    check = await hasher.verify(PASSWORD, "!unusable", "p1")
    assert not check.valid
    assert [(kind, params) for kind, params, _ in spy.calls] == [
        ("verify", None),  # the unparseable stored value
        ("verify", hasher.parameters),  # then a full burn
    ]


async def test_argon2_runs_off_the_event_loop_thread(
    hasher: Argon2PasswordHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Argon2Spy(monkeypatch)
    stored, version = await hasher.hash(PASSWORD)
    await hasher.verify(PASSWORD, stored, version)
    await hasher.burn(PASSWORD)
    await hasher.burn(PASSWORD)
    loop_thread = threading.get_ident()
    assert len(spy.calls) == 4
    assert all(thread != loop_thread for _, _, thread in spy.calls)


async def test_event_loop_keeps_running_while_hashes_run(hasher: Argon2PasswordHasher) -> None:
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    ticks_before = ticks
    results = await asyncio.gather(*(hasher.hash(f"{PASSWORD} {i}") for i in range(4)))
    done.set()
    await ticking
    assert len({stored for stored, _ in results}) == 4
    # Blocking argon2 on the loop would allow at most a tick between hashes (~4); the loop
    # actually spins freely while the pool works.
    assert ticks - ticks_before > 50


async def test_shared_executor_is_used_and_left_open(keys: FakePeppers) -> None:
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shared-argon2")
    names: list[str] = []
    real_hash = argon2.PasswordHasher.hash

    h = Argon2PasswordHasher(keys, executor=pool, **FAST)
    try:
        with pytest.MonkeyPatch.context() as mp:

            def hash_(self: argon2.PasswordHasher, password: Any, **kw: Any) -> str:
                names.append(threading.current_thread().name)
                return real_hash(self, password, **kw)

            mp.setattr(argon2.PasswordHasher, "hash", hash_)
            await h.hash(PASSWORD)
        h.close()
        assert names and names[0].startswith("shared-argon2")
        assert pool.submit(lambda: 42).result() == 42  # close() did not shut the caller's pool
    finally:
        pool.shutdown()
