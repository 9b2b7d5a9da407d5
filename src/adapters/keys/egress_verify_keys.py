"""The public halves of the vault's signing keys, for the egress host's Squid helper: it checks
egress credentials with them and holds nothing that could sign one. Public, so a plain file."""

import json
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from adapters.keys.keyring import KeyringError, load_signing_key

FORMAT = "bulwark-egress-verify-keys/1"


def private_signing_keys(signing_pems: Mapping[str, bytes]) -> dict[str, Ed25519PrivateKey]:
    return {kid: load_signing_key(kid, pem) for kid, pem in signing_pems.items()}


def public_halves(signing_pems: Mapping[str, bytes]) -> dict[str, Ed25519PublicKey]:
    return {kid: key.public_key() for kid, key in private_signing_keys(signing_pems).items()}


def dump_verify_keys(keys: Mapping[str, Ed25519PublicKey]) -> str:
    document = {
        "format": FORMAT,
        "keys": {
            kid: key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode("ascii")
            for kid, key in sorted(keys.items())
        },
    }
    return json.dumps(document, indent=2) + "\n"


def load_verify_keys(path: Path) -> dict[str, Ed25519PublicKey]:
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError) as error:
        raise KeyringError(f"egress verify keys {path}: unreadable ({error})") from error
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise KeyringError(f'egress verify keys {path}: "format" must be {FORMAT!r}')
    keys: dict[str, Ed25519PublicKey] = {}
    for kid, pem in dict(document.get("keys", {})).items():
        try:
            key = serialization.load_pem_public_key(str(pem).encode())
        except ValueError as error:
            raise KeyringError(f"egress verify key {kid!r} is not a PEM public key") from error
        if not isinstance(key, Ed25519PublicKey):
            raise KeyringError(f"egress verify key {kid!r} is not Ed25519")
        keys[str(kid)] = key
    if not keys:
        raise KeyringError(f"egress verify keys {path}: no keys")
    return keys
