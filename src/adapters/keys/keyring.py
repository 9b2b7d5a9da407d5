"""The local keyring: master keys, password peppers and token-signing keys in one JSON file.

The file holds every key version still needed (old master keys keep unwrapping data keys, old
peppers keep verifying passwords, old signing keys keep verifying tokens) plus which version is
active. It is written atomically with 0600 permissions and refused when others can read it.

Rotation helpers never mutate: they return a new Keyring that the caller saves."""

import base64
import binascii
import contextlib
import json
import os
import secrets
import stat
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

FORMAT_VERSION = 1
KEY_BYTES = 32
_MAX_ID_LENGTH = 64  # data_keys.master_key_id and users.pepper_version are String(64)


class KeyringError(Exception):
    """The keyring file or its content is unusable."""


@dataclass(frozen=True)
class Keyring:
    master_keys: Mapping[str, bytes]
    active_master_key_id: str
    peppers: Mapping[str, bytes]
    active_pepper_version: str
    signing_keys: Mapping[str, bytes]  # kid -> PEM PKCS8 Ed25519 private key
    active_signing_kid: str
    generated: bool = False
    # The credential vault's public halves (raw X25519): the API seals with them, never opens.
    broker_sealing_keys: Mapping[str, bytes] = field(default_factory=dict)
    active_broker_sealing_key: str | None = None
    # Secrets of outside peers (e.g. "ctrader_client_secret"), kept out of the environment.
    provider_secrets: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Copy into plain dicts so a caller's later mutation cannot change a checked keyring.
        object.__setattr__(self, "master_keys", dict(self.master_keys))
        object.__setattr__(self, "peppers", dict(self.peppers))
        object.__setattr__(self, "signing_keys", dict(self.signing_keys))
        object.__setattr__(self, "broker_sealing_keys", dict(self.broker_sealing_keys))
        object.__setattr__(self, "provider_secrets", dict(self.provider_secrets))
        _validate(self)

    def __repr__(self) -> str:
        # Never print key material (logs, tracebacks).
        return (
            f"Keyring(master_keys={sorted(self.master_keys)}, active_master_key_id="
            f"{self.active_master_key_id!r}, peppers={sorted(self.peppers)}, active_pepper_version="
            f"{self.active_pepper_version!r}, signing_keys={sorted(self.signing_keys)}, "
            f"active_signing_kid={self.active_signing_kid!r}, generated={self.generated}, "
            f"broker_sealing_keys={sorted(self.broker_sealing_keys)}, "
            f"provider_secrets={sorted(self.provider_secrets)})"
        )


def _validate(keyring: Keyring) -> None:
    kinds = (
        ("master key", keyring.master_keys, keyring.active_master_key_id),
        ("pepper", keyring.peppers, keyring.active_pepper_version),
        ("signing key", keyring.signing_keys, keyring.active_signing_kid),
    )
    # Each key's own problems first: they are the more precise message.
    for kind, keys, _active in kinds:
        if not keys:
            raise KeyringError(f"no {kind}s")
        for key_id in keys:
            if not isinstance(key_id, str) or not key_id or len(key_id) > _MAX_ID_LENGTH:
                raise KeyringError(f"{kind} id {key_id!r} must be 1..{_MAX_ID_LENGTH} characters")
            if not key_id.isascii() or not key_id.isprintable():
                raise KeyringError(f"{kind} id {key_id!r} must be printable ASCII")
    for kind, keys in (("master key", keyring.master_keys), ("pepper", keyring.peppers)):
        for key_id, key in keys.items():
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                size = len(key) if isinstance(key, bytes) else type(key).__name__
                raise KeyringError(f"{kind} {key_id!r} must be {KEY_BYTES} bytes, not {size}")
    for kid, pem in keyring.signing_keys.items():
        _load_signing_key(kid, pem)
    for key_id, public in keyring.broker_sealing_keys.items():
        if not isinstance(public, bytes) or len(public) != KEY_BYTES:
            raise KeyringError(f"broker sealing key {key_id!r} must be a raw 32-byte X25519 public key")
    active_sealing = keyring.active_broker_sealing_key
    if active_sealing is not None and active_sealing not in keyring.broker_sealing_keys:
        raise KeyringError(f"active broker sealing key {active_sealing!r} is not among the sealing keys")
    for kind, keys, active in kinds:
        if active not in keys:
            raise KeyringError(f"active {kind} {active!r} is not among the {kind}s {sorted(keys)}")


def load_signing_key(kid: str, pem: bytes) -> Ed25519PrivateKey:
    return _load_signing_key(kid, pem)


def new_signing_pem() -> bytes:
    return _new_signing_pem()


def _load_signing_key(kid: str, pem: bytes) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise KeyringError(f"signing key {kid!r} is not a PEM PKCS8 private key") from error
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyringError(f"signing key {kid!r} is not an Ed25519 key")
    return key


def signing_public_pem(private_pem: bytes) -> bytes:
    key = _load_signing_key("?", private_pem)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def new_key_id(prefix: str, taken: Mapping[str, Any] | None = None) -> str:
    """Short, sortable by day, random suffix: "mk-20261122-ab12"."""
    taken = taken or {}
    day = datetime.now(UTC).strftime("%Y%m%d")
    while True:
        candidate = f"{prefix}-{day}-{secrets.token_hex(2)}"
        if candidate not in taken:
            return candidate


def _new_signing_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def generate_keyring(generated: bool) -> Keyring:
    master_id, pepper_version, kid = new_key_id("mk"), new_key_id("pv"), new_key_id("sk")
    return Keyring(
        master_keys={master_id: secrets.token_bytes(KEY_BYTES)},
        active_master_key_id=master_id,
        peppers={pepper_version: secrets.token_bytes(KEY_BYTES)},
        active_pepper_version=pepper_version,
        signing_keys={kid: _new_signing_pem()},
        active_signing_kid=kid,
        generated=generated,
    )


# --- rotation ---------------------------------------------------------------------------------


def add_master_key(keyring: Keyring) -> Keyring:
    """A new active master key; the old ones stay to unwrap data keys until re-wrapped."""
    key_id = new_key_id("mk", keyring.master_keys)
    keys = {**keyring.master_keys, key_id: secrets.token_bytes(KEY_BYTES)}
    return replace(keyring, master_keys=keys, active_master_key_id=key_id)


def add_pepper(keyring: Keyring) -> Keyring:
    """A new active pepper; old versions stay so existing password hashes keep verifying."""
    version = new_key_id("pv", keyring.peppers)
    peppers = {**keyring.peppers, version: secrets.token_bytes(KEY_BYTES)}
    return replace(keyring, peppers=peppers, active_pepper_version=version)


def add_signing_key(keyring: Keyring) -> Keyring:
    """A new active signing key; old ones stay published so issued tokens keep verifying."""
    kid = new_key_id("sk", keyring.signing_keys)
    keys = {**keyring.signing_keys, kid: _new_signing_pem()}
    return replace(keyring, signing_keys=keys, active_signing_kid=kid)


def retire_master_key(keyring: Keyring, key_id: str) -> Keyring:
    """Drop an old master key. Only safe once every data key was re-wrapped (SecretBox.rotate)."""
    if key_id == keyring.active_master_key_id:
        raise KeyringError(f"master key {key_id!r} is active; add a new one before retiring it")
    if key_id not in keyring.master_keys:
        raise KeyringError(f"no master key {key_id!r}")
    keys = {k: v for k, v in keyring.master_keys.items() if k != key_id}
    return replace(keyring, master_keys=keys)


def retire_signing_key(keyring: Keyring, kid: str) -> Keyring:
    """Drop an old signing key: tokens it signed stop verifying."""
    if kid == keyring.active_signing_kid:
        raise KeyringError(f"signing key {kid!r} is active; add a new one before retiring it")
    if kid not in keyring.signing_keys:
        raise KeyringError(f"no signing key {kid!r}")
    keys = {k: v for k, v in keyring.signing_keys.items() if k != kid}
    return replace(keyring, signing_keys=keys)


# --- file format ------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _to_json(keyring: Keyring) -> bytes:
    document = {
        "format": FORMAT_VERSION,
        "generated": keyring.generated,
        "master_keys": {k: _b64(v) for k, v in keyring.master_keys.items()},
        "active_master_key_id": keyring.active_master_key_id,
        "peppers": {k: _b64(v) for k, v in keyring.peppers.items()},
        "active_pepper_version": keyring.active_pepper_version,
        "signing_keys": {k: v.decode("ascii") for k, v in keyring.signing_keys.items()},
        "active_signing_kid": keyring.active_signing_kid,
    }
    if keyring.broker_sealing_keys:
        document["broker_sealing_keys"] = {k: _b64(v) for k, v in keyring.broker_sealing_keys.items()}
        document["active_broker_sealing_key"] = keyring.active_broker_sealing_key
    if keyring.provider_secrets:
        document["provider_secrets"] = dict(keyring.provider_secrets)
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def _str_map(document: dict[str, Any], name: str) -> dict[str, str]:
    value = document.get(name)
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise KeyringError(f'"{name}" must be an object of strings')
    return value


def _str(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str):
        raise KeyringError(f'"{name}" is missing or not a string')
    return value


def _decode_keys(raw: dict[str, str], kind: str) -> dict[str, bytes]:
    decoded = {}
    for key_id, text in raw.items():
        try:
            decoded[key_id] = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as error:
            raise KeyringError(f"{kind} {key_id!r} is not valid base64") from error
    return decoded


def _from_json(data: bytes) -> Keyring:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise KeyringError(f"not valid JSON ({error})") from error
    if not isinstance(document, dict):
        raise KeyringError("not a JSON object")
    if document.get("format") != FORMAT_VERSION:
        raise KeyringError(f'"format" must be {FORMAT_VERSION}, not {document.get("format")!r}')
    generated = document.get("generated", False)
    if not isinstance(generated, bool):
        raise KeyringError('"generated" must be true or false')
    return Keyring(
        master_keys=_decode_keys(_str_map(document, "master_keys"), "master key"),
        active_master_key_id=_str(document, "active_master_key_id"),
        peppers=_decode_keys(_str_map(document, "peppers"), "pepper"),
        active_pepper_version=_str(document, "active_pepper_version"),
        signing_keys={k: v.encode() for k, v in _str_map(document, "signing_keys").items()},
        active_signing_kid=_str(document, "active_signing_kid"),
        generated=generated,
        broker_sealing_keys=_decode_keys(_optional_map(document, "broker_sealing_keys"), "sealing key"),
        active_broker_sealing_key=_optional_str(document, "active_broker_sealing_key"),
        provider_secrets=_optional_map(document, "provider_secrets"),
    )


def _optional_map(document: dict[str, Any], name: str) -> dict[str, str]:
    return _str_map(document, name) if name in document else {}


def _optional_str(document: dict[str, Any], name: str) -> str | None:
    return _str(document, name) if document.get(name) is not None else None


def _check_permissions(path: Path, mode: int, what: str) -> None:
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyringError(
            f"{what} {path} has permissions {stat.S_IMODE(mode):04o}; it holds secret keys, "
            f"so group and others must have no access (chmod 600 {path})"
        )


def load_keyring(path: str | os.PathLike[str]) -> Keyring:
    path = Path(path)
    data = read_private_file(path, "keyring")
    try:
        return _from_json(data)
    except KeyringError as error:
        raise KeyringError(f"keyring {path}: {error}") from error


def read_private_file(path: Path, what: str) -> bytes:
    """Reads a file of secret keys, refusing one that group or others could read."""
    try:
        # Symlinks are followed (Kubernetes mounts secrets through them); the checks below run
        # on the opened descriptor, so they apply to the very file that is read.
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError as error:
        raise KeyringError(f"{what} {path} does not exist") from error
    except OSError as error:
        raise KeyringError(f"{what} {path} cannot be opened ({error.strerror})") from error
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise KeyringError(f"{what} {path} is not a regular file")
        _check_permissions(path, info.st_mode, what)
        return handle.read()


def _write_temp(path: Path, data: bytes) -> Path:
    """Write data to a 0600 temporary file next to `path` (same filesystem, for rename/link)."""
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    return Path(temp_name)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_keyring(keyring: Keyring, path: str | os.PathLike[str]) -> None:
    """Atomically replace the keyring file: readers see the old or the new file, never half."""
    write_private_file(Path(path), _to_json(keyring))


def write_private_file(path: Path, data: bytes) -> None:
    temp = _write_temp(path, data)
    try:
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_dir(path.parent)


def ensure_development_keyring(path: str | os.PathLike[str]) -> Keyring:
    """Load the keyring, creating a generated one first if none exists. Never overwrites.

    Safe when several workers start at once: the file appears via link(), which fails if another
    worker created it first, and then everybody loads the same file."""
    path = Path(path)
    if not path.exists():
        create_private_file_once(path, lambda: _to_json(generate_keyring(generated=True)))
    return load_keyring(path)


def create_private_file_once(path: Path, content: Callable[[], bytes]) -> None:
    """Creates the file unless it exists; of racing workers one wins and all read its file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = _write_temp(path, content())
    try:
        os.link(temp, path)
    except FileExistsError:
        pass  # another worker won the race; use its file
    finally:
        os.unlink(temp)
    _fsync_dir(path.parent)


__all__ = [
    "KEY_BYTES",
    "Keyring",
    "KeyringError",
    "add_master_key",
    "add_pepper",
    "add_signing_key",
    "create_private_file_once",
    "ensure_development_keyring",
    "generate_keyring",
    "load_keyring",
    "new_key_id",
    "read_private_file",
    "retire_master_key",
    "retire_signing_key",
    "save_keyring",
    "signing_public_pem",
    "write_private_file",
]
