"""KMS-style key access. A local provider reads keys from a keyring file; a cloud KMS adapter
implements the same calls (wrap/unwrap are KMS Encrypt/Decrypt), so master keys never need to
leave the KMS."""

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class WrappedKey:
    master_key_id: str
    wrapped: bytes


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_pem: bytes
    public_pem: bytes


class KeyProvider(Protocol):
    def active_master_key_id(self) -> str: ...

    async def wrap(self, data_key: bytes, context: bytes) -> WrappedKey:
        """Encrypt a data key under the active master key, bound to `context`."""
        ...

    async def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        """Decrypt a data key with the master key that wrapped it (old versions keep working)."""
        ...

    def pepper(self, version: str) -> bytes: ...

    def active_pepper_version(self) -> str: ...

    def signing_keys(self) -> list[SigningKey]:
        """Every signing key that still verifies; the active one first."""
        ...

    @property
    def generated(self) -> bool:
        """True when the keys were generated on the fly (development only)."""
        ...


class KeyUnavailableError(KeyError):
    """A key version is unknown (or retired), or a wrapped key does not decrypt under it.

    Every KeyProvider raises this (a cloud KMS adapter maps its own errors to it), so callers can
    tell "this key is unusable" apart from infrastructure failures."""

    def __str__(self) -> str:
        # KeyError would show the repr of its argument; keep the message readable.
        return str(self.args[0]) if self.args else "key unavailable"
