"""KeyProvider backed by a local Keyring (development, single-host and on-premises deployments).

wrap/unwrap mirror KMS Encrypt/Decrypt: a cloud adapter would send the data key and the context
(as the KMS "encryption context") to the KMS and store its ciphertext blob in WrappedKey.wrapped,
with the KMS key version as master_key_id. Nothing outside this module sees a master key."""

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adapters.keys.keyring import Keyring, signing_public_pem
from application.ports.key_provider import KeyUnavailableError, SigningKey, WrappedKey

_NONCE_BYTES = 12
_TAG_BYTES = 16
_WRAP_LABEL = b"bulwark/wrap/v1"


def _wrap_associated_data(context: bytes, master_key_id: str) -> bytes:
    # Length-prefixed so (context, key id) pairs can never collide by shifting bytes between them.
    key_id = master_key_id.encode()
    return b"".join(
        (_WRAP_LABEL, struct.pack(">I", len(context)), context, struct.pack(">I", len(key_id)), key_id)
    )


class LocalKeyProvider:
    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        self._master = {key_id: AESGCM(key) for key_id, key in keyring.master_keys.items()}
        active = keyring.active_signing_kid
        kids = [active, *sorted(k for k in keyring.signing_keys if k != active)]
        self._signing = [
            SigningKey(
                kid=kid,
                private_pem=keyring.signing_keys[kid],
                public_pem=signing_public_pem(keyring.signing_keys[kid]),
            )
            for kid in kids
        ]

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    @property
    def generated(self) -> bool:
        return self._keyring.generated

    def active_master_key_id(self) -> str:
        return self._keyring.active_master_key_id

    async def wrap(self, data_key: bytes, context: bytes) -> WrappedKey:
        master_key_id = self._keyring.active_master_key_id
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._master[master_key_id].encrypt(
            nonce, data_key, _wrap_associated_data(context, master_key_id)
        )
        return WrappedKey(master_key_id=master_key_id, wrapped=nonce + sealed)

    async def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        aead = self._master.get(wrapped.master_key_id)
        if aead is None:
            raise KeyUnavailableError(
                f"master key {wrapped.master_key_id!r} is not in the keyring (retired or unknown)"
            )
        blob = wrapped.wrapped
        if len(blob) < _NONCE_BYTES + _TAG_BYTES:
            raise KeyUnavailableError("wrapped key is truncated")
        try:
            return aead.decrypt(
                blob[:_NONCE_BYTES],
                blob[_NONCE_BYTES:],
                _wrap_associated_data(context, wrapped.master_key_id),
            )
        except InvalidTag as error:
            raise KeyUnavailableError(
                f"wrapped key does not decrypt under master key {wrapped.master_key_id!r} with this context"
            ) from error

    def pepper(self, version: str) -> bytes:
        try:
            return self._keyring.peppers[version]
        except KeyError:
            raise KeyUnavailableError(
                f"pepper version {version!r} is not in the keyring; known versions: "
                f"{sorted(self._keyring.peppers)}"
            ) from None

    def active_pepper_version(self) -> str:
        return self._keyring.active_pepper_version

    def signing_keys(self) -> list[SigningKey]:
        return list(self._signing)


__all__ = ["LocalKeyProvider"]
