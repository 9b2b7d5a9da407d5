"""Broker credentials sealed with HPKE base mode (RFC 9180): DHKEM(X25519, HKDF-SHA256),
HKDF-SHA256, AES-256-GCM, from `cryptography`'s implementation.

The HPKE `info` carries the credential's context and the key id, so a ciphertext moved to another
row, org or purpose, or relabelled with another key id, does not open."""

import math
import time
from collections.abc import Callable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from application.ports.credential_sealing import CredentialContext, CredentialSealer, CredentialUnreadable
from domain.brokers import SealedCredential

SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


def _info(context: CredentialContext, key_id: str) -> bytes:
    return context.info() + b"|" + key_id.encode()


class HpkeSealer:
    """Holds a public key only: it can seal, never open."""

    def __init__(self, key_id: str, public_raw: bytes) -> None:
        self.key_id = key_id
        self._public = X25519PublicKey.from_public_bytes(public_raw)

    def seal(self, plaintext: bytes, context: CredentialContext) -> SealedCredential:
        ciphertext = SUITE.encrypt(plaintext, self._public, info=_info(context, self.key_id))
        return SealedCredential(key_id=self.key_id, ciphertext=ciphertext)


class HpkeOpener:
    def __init__(self, private_keys: Mapping[str, bytes], active_key_id: str) -> None:
        self._keys = {k: X25519PrivateKey.from_private_bytes(v) for k, v in private_keys.items()}
        if active_key_id not in self._keys:
            raise ValueError(f"active opening key {active_key_id!r} is not loaded")
        self._active = active_key_id

    def active_key_id(self) -> str:
        return self._active

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def sealer(self) -> CredentialSealer:
        public = (
            self._keys[self._active]
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        return HpkeSealer(self._active, public)

    def open(self, sealed: SealedCredential, context: CredentialContext) -> bytes:
        key = self._keys.get(sealed.key_id)
        if key is None:
            raise CredentialUnreadable(f"no opening key {sealed.key_id!r} in the vault")
        try:
            return SUITE.decrypt(sealed.ciphertext, key, info=_info(context, sealed.key_id))
        except (InvalidTag, ValueError) as error:
            raise CredentialUnreadable("the sealed credential does not open in this context") from error


class ReloadingHpkeOpener:
    """An opener over the vault's key file that rereads the file when it meets a key id it does
    not know (at most once every few seconds): `bulwark vault rotate` can re-seal at once, and
    running vault workers open what it re-sealed without a restart."""

    def __init__(
        self,
        load: Callable[[], tuple[Mapping[str, bytes], str]],
        *,
        min_interval_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._interval = min_interval_seconds
        self._clock = clock
        keys, active = load()
        self._opener = HpkeOpener(keys, active)
        self._reloaded_at = -math.inf  # the first unknown key id always gets a reread

    def active_key_id(self) -> str:
        return self._opener.active_key_id()

    def sealer(self) -> CredentialSealer:
        return self._opener.sealer()

    def open(self, sealed: SealedCredential, context: CredentialContext) -> bytes:
        try:
            return self._opener.open(sealed, context)
        except CredentialUnreadable:
            if sealed.key_id in self._opener.key_ids or self._clock() - self._reloaded_at < self._interval:
                raise
        self._reloaded_at = self._clock()
        keys, active = self._load()
        self._opener = HpkeOpener(keys, active)
        return self._opener.open(sealed, context)
