"""Envelope encryption against real SQLite and PostgreSQL (the `engine` fixture runs each test on
both)."""

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.crypto.secret_box import EnvelopeSecretBox, RotationReport, SecretBoxRotationError
from adapters.keys.keyring import Keyring, add_master_key, generate_keyring, retire_master_key
from adapters.keys.local_key_provider import LocalKeyProvider
from adapters.storage.database import create_engine
from adapters.storage.tables import data_keys
from application.ports.key_provider import WrappedKey
from application.ports.secret_box import SecretBoxError, SecretContext

CONTEXT = SecretContext(table="broker_credentials", row_id="row-1", purpose="api_secret")
SECRET = b"broker api secret \x00\xff"


@pytest.fixture
def keyring() -> Keyring:
    return generate_keyring(generated=False)


@pytest.fixture
def box(engine: AsyncEngine, keyring: Keyring) -> EnvelopeSecretBox:
    return EnvelopeSecretBox(engine, LocalKeyProvider(keyring))


async def _rows(engine: AsyncEngine) -> list[tuple[str, str, bool]]:
    async with engine.connect() as conn:
        result = await conn.execute(
            select(data_keys.c.id, data_keys.c.master_key_id, data_keys.c.active).order_by(data_keys.c.id)
        )
        return [(row.id, row.master_key_id, row.active) for row in result]


def _dek_id(envelope: bytes) -> str:
    return envelope[2 : 2 + envelope[1]].decode()


async def test_sealed_secret_opens_with_the_same_context(box: EnvelopeSecretBox) -> None:
    envelope = await box.seal(SECRET, CONTEXT)
    assert SECRET not in envelope
    assert await box.open(envelope, CONTEXT) == SECRET


async def test_empty_secret_round_trips(box: EnvelopeSecretBox) -> None:
    assert await box.open(await box.seal(b"", CONTEXT), CONTEXT) == b""


async def test_secret_opens_in_another_process_with_the_same_keyring(
    engine: AsyncEngine, box: EnvelopeSecretBox, keyring: Keyring
) -> None:
    envelope = await box.seal(SECRET, CONTEXT)
    # A second box has an empty cache: it must load and unwrap the data key from the table.
    other = EnvelopeSecretBox(engine, LocalKeyProvider(keyring))
    assert await other.open(envelope, CONTEXT) == SECRET


@pytest.mark.parametrize(
    "moved",
    [
        SecretContext(table="broker_credentials", row_id="row-2", purpose="api_secret"),
        SecretContext(table="totp_secrets", row_id="row-1", purpose="api_secret"),
        SecretContext(table="broker_credentials", row_id="row-1", purpose="api_key"),
    ],
    ids=["another_row", "another_table", "another_purpose"],
)
async def test_ciphertext_moved_to_another_row_table_or_purpose_fails_to_decrypt(
    box: EnvelopeSecretBox, moved: SecretContext
) -> None:
    envelope = await box.seal(SECRET, CONTEXT)
    with pytest.raises(SecretBoxError) as raised:
        await box.open(envelope, moved)
    assert str(raised.value) == "the secret cannot be opened"
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


async def test_any_tampered_byte_fails_to_decrypt(box: EnvelopeSecretBox) -> None:
    envelope = await box.seal(SECRET, CONTEXT)
    for index in range(len(envelope)):
        tampered = bytearray(envelope)
        tampered[index] ^= 0x01
        with pytest.raises(SecretBoxError):
            await box.open(bytes(tampered), CONTEXT)


@pytest.mark.parametrize(
    "envelope",
    [b"", b"\x01", b"\x02\x03abc" + bytes(40), b"\x01\x00" + bytes(40), b"\x01\x05dk-1"],
    ids=["empty", "version_only", "unknown_version", "empty_key_id", "truncated"],
)
async def test_malformed_envelope_is_refused(box: EnvelopeSecretBox, envelope: bytes) -> None:
    await box.seal(SECRET, CONTEXT)
    with pytest.raises(SecretBoxError):
        await box.open(envelope, CONTEXT)


async def test_envelope_naming_an_unknown_data_key_is_refused(box: EnvelopeSecretBox) -> None:
    envelope = await box.seal(SECRET, CONTEXT)
    dek_id = _dek_id(envelope).encode()
    forged = b"\x01" + bytes([len(b"dk-missing")]) + b"dk-missing" + envelope[2 + len(dek_id) :]
    with pytest.raises(SecretBoxError):
        await box.open(forged, CONTEXT)


async def test_truncated_tag_is_refused(box: EnvelopeSecretBox) -> None:
    envelope = await box.seal(SECRET, CONTEXT)
    with pytest.raises(SecretBoxError):
        await box.open(envelope[:-1], CONTEXT)


async def test_same_plaintext_seals_to_different_nonces(box: EnvelopeSecretBox) -> None:
    first, second = await box.seal(SECRET, CONTEXT), await box.seal(SECRET, CONTEXT)
    header = 2 + first[1]
    assert _dek_id(first) == _dek_id(second)
    assert first[header : header + 12] != second[header : header + 12]
    assert first != second


async def test_data_key_is_stored_wrapped_not_in_the_clear(
    engine: AsyncEngine, box: EnvelopeSecretBox, keyring: Keyring
) -> None:
    envelope = await box.seal(SECRET, CONTEXT)
    dek_id = _dek_id(envelope)
    async with engine.connect() as conn:
        row = (await conn.execute(select(data_keys).where(data_keys.c.id == dek_id))).one()
    assert row.master_key_id == keyring.active_master_key_id
    dek = await LocalKeyProvider(keyring).unwrap(
        WrappedKey(row.master_key_id, row.wrapped), f"bulwark/data-key/v1|{dek_id}".encode()
    )
    assert len(dek) == 32 and dek not in row.wrapped
    # That unwrapped key really is the one the envelope was sealed with.
    header = 2 + envelope[1]
    plain = AESGCM(dek).decrypt(
        envelope[header : header + 12], envelope[header + 12 :], CONTEXT.associated_data()
    )
    assert plain == SECRET


async def test_wrapped_data_key_copied_under_another_id_does_not_unwrap(
    engine: AsyncEngine, box: EnvelopeSecretBox, keyring: Keyring
) -> None:
    envelope = await box.seal(SECRET, CONTEXT)
    dek_id = _dek_id(envelope)
    async with engine.begin() as conn:
        row = (await conn.execute(select(data_keys).where(data_keys.c.id == dek_id))).one()
        await conn.execute(
            data_keys.insert().values(
                id="dk-copy",
                master_key_id=row.master_key_id,
                wrapped=row.wrapped,
                active=False,
                created_at=row.created_at,
            )
        )
    relabelled = b"\x01" + bytes([len(b"dk-copy")]) + b"dk-copy" + envelope[2 + len(dek_id) :]
    fresh = EnvelopeSecretBox(engine, LocalKeyProvider(keyring))
    with pytest.raises(SecretBoxError):
        await fresh.open(relabelled, CONTEXT)
    assert await fresh.open(envelope, CONTEXT) == SECRET


async def test_data_key_is_created_once_and_reused(engine: AsyncEngine, box: EnvelopeSecretBox) -> None:
    assert await _rows(engine) == []
    envelopes = [await box.seal(SECRET, CONTEXT) for _ in range(3)]
    rows = await _rows(engine)
    assert len(rows) == 1 and rows[0][2] is True
    assert {_dek_id(e) for e in envelopes} == {rows[0][0]}


class _SimultaneousProvider(LocalKeyProvider):
    """Holds every worker in wrap() until all arrived: all then try to create the first DEK."""

    def __init__(self, keyring: Keyring, barrier: threading.Barrier) -> None:
        super().__init__(keyring)
        self._barrier = barrier

    async def wrap(self, data_key: bytes, context: bytes) -> WrappedKey:
        self._barrier.wait(timeout=30)  # blocks only this worker's thread and event loop
        return await super().wrap(data_key, context)


def _slow_data_key_inserts(engine: AsyncEngine) -> None:
    # Widen the window between "no active DEK found" and the INSERT, where an unserialised
    # creator lets every worker insert its own active DEK.
    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _pause(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO DATA_KEYS"):
            time.sleep(0.3)


def test_workers_racing_to_create_the_first_data_key_leave_one_active(
    database_url: str, keyring: Keyring
) -> None:
    workers = 4
    barrier = threading.Barrier(workers)

    async def worker() -> bytes:
        # Own thread, event loop, pool and cache: as a separate worker process has.
        engine = create_engine(database_url, pool_size=2)
        _slow_data_key_inserts(engine)
        try:
            return await EnvelopeSecretBox(engine, _SimultaneousProvider(keyring, barrier)).seal(
                SECRET, CONTEXT
            )
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(workers) as pool:
        envelopes = list(pool.map(lambda _: asyncio.run(worker()), range(workers)))

    async def check() -> None:
        engine = create_engine(database_url, pool_size=2)
        try:
            rows = await _rows(engine)
            assert len(rows) == 1 and rows[0][2] is True
            assert {_dek_id(e) for e in envelopes} == {rows[0][0]}
            box = EnvelopeSecretBox(engine, LocalKeyProvider(keyring))
            for envelope in envelopes:
                assert await box.open(envelope, CONTEXT) == SECRET
        finally:
            await engine.dispose()

    asyncio.run(check())


async def test_rotation_rewraps_under_the_new_master_key_and_old_secrets_still_open(
    engine: AsyncEngine, keyring: Keyring
) -> None:
    box = EnvelopeSecretBox(engine, LocalKeyProvider(keyring))
    old_master = keyring.active_master_key_id
    before = await box.seal(SECRET, CONTEXT)

    rotated = add_master_key(keyring)
    new_master = rotated.active_master_key_id
    rotating_box = EnvelopeSecretBox(engine, LocalKeyProvider(rotated))
    report = await rotating_box.rotate()

    assert report == RotationReport(
        master_key_id=new_master, rewrapped=1, already_current=0, new_data_key_id=report.new_data_key_id
    )
    rows = await _rows(engine)
    assert {r[1] for r in rows} == {new_master}
    assert [r[0] for r in rows if r[2]] == [report.new_data_key_id]
    assert report.new_data_key_id != _dek_id(before)

    # Without the old master key, opening only works because the data key was re-wrapped.
    retired = retire_master_key(rotated, old_master)
    assert old_master not in retired.master_keys
    after_retirement = EnvelopeSecretBox(engine, LocalKeyProvider(retired))
    assert await after_retirement.open(before, CONTEXT) == SECRET

    after = await after_retirement.seal(SECRET, CONTEXT)
    assert _dek_id(after) == report.new_data_key_id


async def test_without_rotation_a_retired_master_key_makes_old_secrets_unreadable(
    engine: AsyncEngine, keyring: Keyring
) -> None:
    # The counterpart of the test above: it proves that re-wrapping is what keeps them readable.
    before = await EnvelopeSecretBox(engine, LocalKeyProvider(keyring)).seal(SECRET, CONTEXT)
    retired = retire_master_key(add_master_key(keyring), keyring.active_master_key_id)
    with pytest.raises(SecretBoxError):
        await EnvelopeSecretBox(engine, LocalKeyProvider(retired)).open(before, CONTEXT)


async def test_rotating_box_seals_with_the_fresh_data_key_at_once(
    engine: AsyncEngine, box: EnvelopeSecretBox
) -> None:
    before = await box.seal(SECRET, CONTEXT)
    report = await box.rotate()
    after = await box.seal(SECRET, CONTEXT)
    assert _dek_id(after) == report.new_data_key_id != _dek_id(before)
    assert report.rewrapped == 0 and report.already_current == 1
    assert await box.open(before, CONTEXT) == SECRET
    assert await box.open(after, CONTEXT) == SECRET


async def test_other_workers_move_to_the_fresh_data_key_after_their_cache_expires(
    engine: AsyncEngine, keyring: Keyring
) -> None:
    worker = EnvelopeSecretBox(engine, LocalKeyProvider(keyring), active_key_ttl_seconds=0)
    before = await worker.seal(SECRET, CONTEXT)
    report = await EnvelopeSecretBox(engine, LocalKeyProvider(keyring)).rotate()
    after = await worker.seal(SECRET, CONTEXT)
    assert _dek_id(before) != _dek_id(after) == report.new_data_key_id


async def test_rotation_on_an_empty_table_creates_the_first_data_key(
    engine: AsyncEngine, box: EnvelopeSecretBox
) -> None:
    report = await box.rotate()
    assert report.rewrapped == report.already_current == 0
    assert await _rows(engine) == [(report.new_data_key_id, report.master_key_id, True)]


async def test_rotation_with_a_missing_old_master_key_changes_nothing(
    engine: AsyncEngine, keyring: Keyring
) -> None:
    await EnvelopeSecretBox(engine, LocalKeyProvider(keyring)).seal(SECRET, CONTEXT)
    before = await _rows(engine)
    retired = retire_master_key(add_master_key(keyring), keyring.active_master_key_id)
    with pytest.raises(SecretBoxRotationError, match="cannot be unwrapped"):
        await EnvelopeSecretBox(engine, LocalKeyProvider(retired)).rotate()
    assert await _rows(engine) == before


async def test_repeated_rotations_keep_every_secret_readable(engine: AsyncEngine, keyring: Keyring) -> None:
    sealed: list[tuple[bytes, bytes]] = []
    for _ in range(3):
        box = EnvelopeSecretBox(engine, LocalKeyProvider(keyring))
        secret = os.urandom(20)
        sealed.append((secret, await box.seal(secret, CONTEXT)))
        keyring = add_master_key(keyring)
        await EnvelopeSecretBox(engine, LocalKeyProvider(keyring)).rotate()
    only_latest = keyring
    for old in [k for k in keyring.master_keys if k != keyring.active_master_key_id]:
        only_latest = retire_master_key(only_latest, old)
    reader = EnvelopeSecretBox(engine, LocalKeyProvider(only_latest))
    for secret, envelope in sealed:
        assert await reader.open(envelope, CONTEXT) == secret
    assert len([r for r in await _rows(engine) if r[2]]) == 1
