"""Envelope encryption for secrets at rest (broker credentials, TOTP seeds, refresh successors).

Secrets are sealed with AES-256-GCM under a data key (DEK). DEKs are random, stored in the
`data_keys` table wrapped by the KeyProvider's master key, and cached unwrapped in memory, so the
master key (possibly in a cloud KMS) is touched once per DEK per process, not once per secret.

Envelope layout (all fields binary):

    version (1 byte = 1) | len(dek_id) (1 byte) | dek_id (ASCII) | nonce (12 bytes) | ciphertext+tag

The associated data is SecretContext.associated_data(), so a ciphertext copied to another table,
row or purpose does not open. Tampering with the DEK id just selects a key that fails the tag."""

import asyncio
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.storage.tables import data_keys
from application.ports.key_provider import KeyProvider, KeyUnavailableError, WrappedKey
from application.ports.secret_box import SecretBoxError, SecretContext

ENVELOPE_VERSION = 1
_NONCE_BYTES = 12
_TAG_BYTES = 16
_DEK_BYTES = 32
_MAX_DEK_ID = 64  # data_keys.id is String(64)
# pg_advisory_xact_lock key serialising data-key creation and rotation across workers
# ("bulwDEK1" as a big-endian int64).
_PG_LOCK_KEY = int.from_bytes(b"bulwDEK1", "big")
_OPEN_FAILED = "the secret cannot be opened"


@dataclass(frozen=True)
class RotationReport:
    master_key_id: str  # every data key is now wrapped under this master key
    rewrapped: int  # data keys that were under an older master key
    already_current: int  # data keys that were already under the active master key
    new_data_key_id: str  # the fresh active data key new seals use


class SecretBoxRotationError(SecretBoxError):
    """Rotation stopped (nothing was changed): a data key could not be unwrapped."""


class _UnknownDataKey(Exception):
    pass


def _data_key_context(dek_id: str) -> bytes:
    # Binds a wrapped DEK to its row: swapping `wrapped` blobs between rows fails to unwrap.
    return f"bulwark/data-key/v1|{dek_id}".encode()


def _new_dek_id() -> str:
    return f"dk-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(8)}"


def _valid_dek_id(dek_id: str) -> bool:
    return 0 < len(dek_id) <= _MAX_DEK_ID and dek_id.isascii() and dek_id.isprintable()


def _encode(dek_id: str, nonce: bytes, sealed: bytes) -> bytes:
    raw_id = dek_id.encode("ascii")
    return bytes((ENVELOPE_VERSION, len(raw_id))) + raw_id + nonce + sealed


def _decode(envelope: bytes) -> tuple[str, bytes, bytes]:
    """Split an envelope; ValueError on anything malformed."""
    if len(envelope) < 2 or envelope[0] != ENVELOPE_VERSION:
        raise ValueError("unknown envelope version")
    id_length = envelope[1]
    nonce_at = 2 + id_length
    sealed_at = nonce_at + _NONCE_BYTES
    if id_length == 0 or len(envelope) < sealed_at + _TAG_BYTES:
        raise ValueError("truncated envelope")
    dek_id = envelope[2:nonce_at].decode("ascii")  # UnicodeDecodeError is a ValueError
    if not _valid_dek_id(dek_id):
        raise ValueError("bad data key id")
    return dek_id, envelope[nonce_at:sealed_at], envelope[sealed_at:]


async def _lock_data_keys(conn: AsyncConnection) -> None:
    """Serialise writers of data_keys across processes (inside the current transaction).

    SQLite needs nothing more: our engine opens every transaction with BEGIN IMMEDIATE."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})


async def _select_active(conn: AsyncConnection) -> tuple[str, str, bytes] | None:
    # Creation is serialised so there is at most one active row; if an operator ever leaves two,
    # every worker still picks the same one.
    row = (
        await conn.execute(
            select(data_keys.c.id, data_keys.c.master_key_id, data_keys.c.wrapped)
            .where(data_keys.c.active.is_(True))
            .order_by(data_keys.c.created_at.desc(), data_keys.c.id.desc())
            .limit(1)
        )
    ).first()
    return None if row is None else (row.id, row.master_key_id, row.wrapped)


class EnvelopeSecretBox:
    def __init__(
        self,
        engine: AsyncEngine,
        key_provider: KeyProvider,
        *,
        active_key_ttl_seconds: float = 300.0,
    ) -> None:
        self._engine = engine
        self._keys = key_provider
        # How long this process keeps sealing with the DEK it knows as active before re-reading:
        # after another worker rotates, seals move to the new DEK within this delay (the old DEK
        # keeps working for both seal and open, so the delay is harmless).
        self._active_ttl = active_key_ttl_seconds
        self._data_keys: dict[str, AESGCM] = {}
        self._active: tuple[str, float] | None = None  # (dek id, monotonic time it was read)
        self._write_lock = asyncio.Lock()

    # --- SecretBox port -----------------------------------------------------------------------

    async def seal(self, plaintext: bytes, context: SecretContext) -> bytes:
        dek_id, aead = await self._active_data_key()
        nonce = os.urandom(_NONCE_BYTES)
        return _encode(dek_id, nonce, aead.encrypt(nonce, plaintext, context.associated_data()))

    async def open(self, envelope: bytes, context: SecretContext) -> bytes:
        # One message and no chained cause for every failure: callers and logs learn nothing
        # about which check failed.
        try:
            dek_id, nonce, sealed = _decode(envelope)
        except ValueError:
            raise SecretBoxError(_OPEN_FAILED) from None
        try:
            aead = await self._data_key(dek_id)
            return aead.decrypt(nonce, sealed, context.associated_data())
        except (InvalidTag, KeyUnavailableError, _UnknownDataKey):
            raise SecretBoxError(_OPEN_FAILED) from None

    # --- rotation -----------------------------------------------------------------------------

    async def rotate(self) -> RotationReport:
        """Re-wrap every DEK under the active master key and start a fresh active DEK.

        Online: envelopes name their DEK, and no DEK is deleted, so everything sealed before
        stays readable. Once this returns, older master keys can be retired from the keyring."""
        async with self._write_lock:
            new_id = _new_dek_id()
            new_key = AESGCM.generate_key(bit_length=256)
            new_wrapped = await self._keys.wrap(new_key, _data_key_context(new_id))
            rewrapped = current = 0
            async with self._engine.begin() as conn:
                await _lock_data_keys(conn)
                rows = (
                    await conn.execute(select(data_keys.c.id, data_keys.c.master_key_id, data_keys.c.wrapped))
                ).all()
                for row in rows:
                    if row.master_key_id == new_wrapped.master_key_id:
                        current += 1
                        continue
                    context = _data_key_context(row.id)
                    try:
                        key = await self._keys.unwrap(WrappedKey(row.master_key_id, row.wrapped), context)
                    except KeyUnavailableError as error:
                        raise SecretBoxRotationError(
                            f"data key {row.id!r} (master key {row.master_key_id!r}) cannot be "
                            f"unwrapped: {error}; restore that master key in the keyring and retry"
                        ) from error
                    again = await self._keys.wrap(key, context)
                    await conn.execute(
                        update(data_keys)
                        .where(data_keys.c.id == row.id)
                        .values(master_key_id=again.master_key_id, wrapped=again.wrapped)
                    )
                    self._data_keys.setdefault(row.id, AESGCM(key))
                    rewrapped += 1
                await conn.execute(update(data_keys).where(data_keys.c.active.is_(True)).values(active=False))
                await self._insert(conn, new_id, new_wrapped, active=True)
            self._data_keys[new_id] = AESGCM(new_key)
            self._active = (new_id, time.monotonic())
            return RotationReport(
                master_key_id=new_wrapped.master_key_id,
                rewrapped=rewrapped,
                already_current=current,
                new_data_key_id=new_id,
            )

    # --- data keys ----------------------------------------------------------------------------

    async def _active_data_key(self) -> tuple[str, AESGCM]:
        active = self._active
        if active is not None and time.monotonic() - active[1] < self._active_ttl:
            return active[0], self._data_keys[active[0]]
        async with self._engine.connect() as conn:
            row = await _select_active(conn)
        if row is None:
            return await self._create_active_data_key()
        return await self._remember_active(*row)

    async def _create_active_data_key(self) -> tuple[str, AESGCM]:
        async with self._write_lock:  # one creation per process at a time
            # Wrap before taking the database lock: with a cloud KMS this is a network call.
            dek_id = _new_dek_id()
            key = AESGCM.generate_key(bit_length=256)
            wrapped = await self._keys.wrap(key, _data_key_context(dek_id))
            async with self._engine.begin() as conn:
                await _lock_data_keys(conn)
                existing = await _select_active(conn)
                if existing is None:
                    await self._insert(conn, dek_id, wrapped, active=True)
            if existing is not None:  # another worker (or coroutine) created it first
                return await self._remember_active(*existing)
            self._data_keys[dek_id] = AESGCM(key)
            self._active = (dek_id, time.monotonic())
            return dek_id, self._data_keys[dek_id]

    async def _remember_active(self, dek_id: str, master_key_id: str, wrapped: bytes) -> tuple[str, AESGCM]:
        aead = self._data_keys.get(dek_id)
        if aead is None:
            key = await self._keys.unwrap(WrappedKey(master_key_id, wrapped), _data_key_context(dek_id))
            aead = self._data_keys.setdefault(dek_id, AESGCM(key))
        self._active = (dek_id, time.monotonic())
        return dek_id, aead

    async def _data_key(self, dek_id: str) -> AESGCM:
        aead = self._data_keys.get(dek_id)
        if aead is not None:
            return aead
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(data_keys.c.master_key_id, data_keys.c.wrapped).where(data_keys.c.id == dek_id)
                )
            ).first()
        if row is None:
            raise _UnknownDataKey
        key = await self._keys.unwrap(WrappedKey(row.master_key_id, row.wrapped), _data_key_context(dek_id))
        return self._data_keys.setdefault(dek_id, AESGCM(key))

    @staticmethod
    async def _insert(conn: AsyncConnection, dek_id: str, wrapped: WrappedKey, *, active: bool) -> None:
        await conn.execute(
            data_keys.insert().values(
                id=dek_id,
                master_key_id=wrapped.master_key_id,
                wrapped=wrapped.wrapped,
                active=active,
                created_at=datetime.now(UTC),
            )
        )


__all__ = ["ENVELOPE_VERSION", "EnvelopeSecretBox", "RotationReport", "SecretBoxRotationError"]
