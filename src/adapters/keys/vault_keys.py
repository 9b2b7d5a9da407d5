"""The credential vault's own key file: the opening (private) halves of the broker sealing keys,
the keys that sign service tokens, the key that hashes service-client secrets, and the secrets of
outside peers the vault needs (cTrader's client secret, to refresh tokens).

Only the vault process loads it. The public API receives the public halves alone (`public_halves`)."""

import base64
import binascii
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from adapters.keys.keyring import (
    KEY_BYTES,
    KeyringError,
    create_private_file_once,
    load_signing_key,
    new_key_id,
    new_signing_pem,
    read_private_file,
    write_private_file,
)

FORMAT = "bulwark-vault-keys/1"


@dataclass(frozen=True)
class VaultKeys:
    opening_keys: Mapping[str, bytes]  # key id -> raw X25519 private key
    active_opening_key_id: str
    signing_keys: Mapping[str, bytes]  # kid -> PEM PKCS8 Ed25519
    active_signing_kid: str
    client_secret_key: bytes
    provider_secrets: Mapping[str, str] = field(default_factory=dict)
    generated: bool = False

    def __post_init__(self) -> None:
        for name in ("opening_keys", "signing_keys", "provider_secrets"):
            object.__setattr__(self, name, dict(getattr(self, name)))
        if self.active_opening_key_id not in self.opening_keys:
            raise KeyringError(f"active opening key {self.active_opening_key_id!r} is not in the file")
        if self.active_signing_kid not in self.signing_keys:
            raise KeyringError(f"active signing key {self.active_signing_kid!r} is not in the file")
        for key_id, raw in self.opening_keys.items():
            if len(raw) != KEY_BYTES:
                raise KeyringError(f"opening key {key_id!r} must be 32 bytes")
        for kid, pem in self.signing_keys.items():
            load_signing_key(kid, pem)
        if len(self.client_secret_key) != KEY_BYTES:
            raise KeyringError("client_secret_key must be 32 bytes")

    def __repr__(self) -> str:
        return (
            f"VaultKeys(opening_keys={sorted(self.opening_keys)}, active={self.active_opening_key_id!r}, "
            f"signing_keys={sorted(self.signing_keys)}, generated={self.generated})"
        )

    def public_halves(self) -> dict[str, bytes]:
        return {key_id: public_half(raw) for key_id, raw in self.opening_keys.items()}


def public_half(private_raw: bytes) -> bytes:
    return (
        X25519PrivateKey.from_private_bytes(private_raw)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def _new_opening_key() -> bytes:
    return X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def generate_vault_keys(generated: bool) -> VaultKeys:
    key_id, kid = new_key_id("bk"), new_key_id("vk")
    return VaultKeys(
        opening_keys={key_id: _new_opening_key()},
        active_opening_key_id=key_id,
        signing_keys={kid: new_signing_pem()},
        active_signing_kid=kid,
        client_secret_key=secrets.token_bytes(KEY_BYTES),
        generated=generated,
    )


def add_opening_key(keys: VaultKeys) -> VaultKeys:
    """A new active key pair; old private halves stay so what they sealed still opens."""
    key_id = new_key_id("bk", keys.opening_keys)
    return replace(
        keys, opening_keys={**keys.opening_keys, key_id: _new_opening_key()}, active_opening_key_id=key_id
    )


def retire_opening_key(keys: VaultKeys, key_id: str) -> VaultKeys:
    if key_id == keys.active_opening_key_id:
        raise KeyringError(f"opening key {key_id!r} is active; rotate before retiring it")
    if key_id not in keys.opening_keys:
        raise KeyringError(f"no opening key {key_id!r}")
    return replace(keys, opening_keys={k: v for k, v in keys.opening_keys.items() if k != key_id})


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError) as error:
        raise KeyringError(f"{what} is not valid base64") from error


def _to_json(keys: VaultKeys) -> bytes:
    document = {
        "format": FORMAT,
        "generated": keys.generated,
        "opening_keys": {k: _b64(v) for k, v in keys.opening_keys.items()},
        "active_opening_key_id": keys.active_opening_key_id,
        "signing_keys": {k: v.decode("ascii") for k, v in keys.signing_keys.items()},
        "active_signing_kid": keys.active_signing_kid,
        "client_secret_key": _b64(keys.client_secret_key),
        "provider_secrets": dict(keys.provider_secrets),
    }
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def _from_json(data: bytes) -> VaultKeys:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise KeyringError(f"not valid JSON ({error})") from error
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise KeyringError(f'not a vault key file ("format" must be {FORMAT!r})')
    try:
        return VaultKeys(
            opening_keys={k: _unb64(v, f"opening key {k!r}") for k, v in document["opening_keys"].items()},
            active_opening_key_id=str(document["active_opening_key_id"]),
            signing_keys={k: str(v).encode() for k, v in document["signing_keys"].items()},
            active_signing_kid=str(document["active_signing_kid"]),
            client_secret_key=_unb64(document["client_secret_key"], "client_secret_key"),
            provider_secrets={str(k): str(v) for k, v in document.get("provider_secrets", {}).items()},
            generated=bool(document.get("generated", False)),
        )
    except (KeyError, AttributeError, TypeError) as error:
        raise KeyringError(f"vault key file is missing or mistypes {error}") from error


def load_vault_keys(path: Path) -> VaultKeys:
    data = read_private_file(path, "vault key file")
    try:
        return _from_json(data)
    except KeyringError as error:
        raise KeyringError(f"vault key file {path}: {error}") from error


def save_vault_keys(keys: VaultKeys, path: Path) -> None:
    write_private_file(path, _to_json(keys))


def ensure_development_vault_keys(path: Path) -> VaultKeys:
    if not path.exists():
        create_private_file_once(path, lambda: _to_json(generate_vault_keys(generated=True)))
    return load_vault_keys(path)


def looks_like_vault_keys(data: bytes) -> bool:
    """A public API must never be handed the vault's file (it would hold the opening keys)."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(document, dict) and ("opening_keys" in document or document.get("format") == FORMAT)
