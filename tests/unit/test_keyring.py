"""Keyring file handling and the local key provider (no database needed)."""

import base64
import json
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from adapters.keys.keyring import (
    KeyringError,
    add_master_key,
    add_pepper,
    add_signing_key,
    ensure_development_keyring,
    generate_keyring,
    load_keyring,
    retire_master_key,
    retire_signing_key,
    save_keyring,
)
from adapters.keys.local_key_provider import LocalKeyProvider
from application.ports.key_provider import KeyUnavailableError, WrappedKey


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _rewrite(path: Path, change: dict[str, object]) -> None:
    document = json.loads(path.read_text())
    document.update(change)
    path.write_text(json.dumps(document))
    path.chmod(0o600)


# --- file --------------------------------------------------------------------------------------


def test_saved_keyring_is_private_to_its_owner_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    keyring = generate_keyring(generated=False)
    save_keyring(keyring, path)
    assert _mode(path) == 0o600
    assert load_keyring(path) == keyring


def test_saving_over_a_loose_file_leaves_it_private(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    path.write_text("{}")
    path.chmod(0o644)
    save_keyring(generate_keyring(generated=False), path)
    assert _mode(path) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name != "keyring.json"]  # no temp left behind


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o620])
def test_keyring_that_group_or_others_can_access_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "keyring.json"
    save_keyring(generate_keyring(generated=False), path)
    path.chmod(mode)
    with pytest.raises(KeyringError, match=r"permissions.*chmod 600") as raised:
        load_keyring(path)
    assert str(path) in str(raised.value)


def test_missing_keyring_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(KeyringError, match="does not exist") as raised:
        load_keyring(path)
    assert str(path) in str(raised.value)


def test_permissions_are_checked_on_the_file_a_symlink_points_to(tmp_path: Path) -> None:
    target = tmp_path / "real.json"
    keyring = generate_keyring(generated=False)
    save_keyring(keyring, target)
    link = tmp_path / "keyring.json"
    link.symlink_to(target)
    assert load_keyring(link) == keyring  # mounted secrets (Kubernetes) are symlinks
    target.chmod(0o644)
    with pytest.raises(KeyringError, match="permissions 0644"):
        load_keyring(link)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"active_master_key_id": "mk-nope"}, r"active master key 'mk-nope' is not among"),
        ({"active_pepper_version": None}, r'"active_pepper_version" is missing'),
        ({"active_signing_kid": "sk-nope"}, r"active signing key 'sk-nope'"),
        ({"master_keys": {"mk-1": "%%%not-base64"}}, r"master key 'mk-1' is not valid base64"),
        ({"peppers": {"pv-1": base64.b64encode(b"short").decode()}}, r"pepper 'pv-1' must be 32 bytes"),
        ({"signing_keys": {"sk-1": "garbage"}}, r"signing key 'sk-1' is not a PEM"),
        ({"format": 99}, r'"format" must be 1'),
    ],
)
def test_invalid_keyring_content_is_refused_with_a_clear_message(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    path = tmp_path / "keyring.json"
    save_keyring(generate_keyring(generated=False), path)
    _rewrite(path, change)
    with pytest.raises(KeyringError, match=message) as raised:
        load_keyring(path)
    assert str(path) in str(raised.value)


def test_non_json_keyring_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    path.write_text("master=abc")
    path.chmod(0o600)
    with pytest.raises(KeyringError, match="not valid JSON"):
        load_keyring(path)


def test_signing_key_of_another_algorithm_is_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    keyring = generate_keyring(generated=False)
    with pytest.raises(KeyringError, match="not an Ed25519 key"):
        replace(keyring, signing_keys={"sk-ec": pem}, active_signing_kid="sk-ec")


def test_keyring_repr_shows_no_key_material() -> None:
    keyring = generate_keyring(generated=False)
    shown = repr(keyring)
    for key in [*keyring.master_keys.values(), *keyring.peppers.values()]:
        assert base64.b64encode(key).decode() not in shown
        assert repr(key) not in shown
    assert "PRIVATE KEY" not in shown


def test_development_keyring_is_created_once_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "dev" / "keyring.json"
    first = ensure_development_keyring(path)
    assert first.generated
    assert _mode(path) == 0o600
    written = path.read_bytes()
    second = ensure_development_keyring(path)
    assert second == first
    assert path.read_bytes() == written


def test_development_keyring_keeps_an_existing_operator_keyring(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    operator = generate_keyring(generated=False)
    save_keyring(operator, path)
    assert ensure_development_keyring(path) == operator


def test_development_keyring_refuses_an_existing_loose_file_instead_of_replacing_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keyring.json"
    save_keyring(generate_keyring(generated=False), path)
    path.chmod(0o644)
    before = path.read_bytes()
    with pytest.raises(KeyringError, match="permissions"):
        ensure_development_keyring(path)
    assert path.read_bytes() == before


# --- rotation helpers --------------------------------------------------------------------------


def test_added_master_key_becomes_active_and_old_one_is_kept() -> None:
    keyring = generate_keyring(generated=False)
    rotated = add_master_key(keyring)
    assert rotated.active_master_key_id != keyring.active_master_key_id
    assert rotated.active_master_key_id.startswith("mk-")
    assert (
        rotated.master_keys[keyring.active_master_key_id] == keyring.master_keys[keyring.active_master_key_id]
    )
    assert len(rotated.master_keys[rotated.active_master_key_id]) == 32
    assert keyring.active_master_key_id in rotated.master_keys
    assert len(keyring.master_keys) == 1  # the original is not mutated


def test_added_pepper_and_signing_key_become_active_and_old_ones_are_kept() -> None:
    keyring = generate_keyring(generated=False)
    rotated = add_signing_key(add_pepper(keyring))
    assert rotated.active_pepper_version not in keyring.peppers
    assert set(keyring.peppers) < set(rotated.peppers)
    assert rotated.active_signing_kid not in keyring.signing_keys
    assert set(keyring.signing_keys) < set(rotated.signing_keys)


def test_active_master_key_cannot_be_retired() -> None:
    keyring = generate_keyring(generated=False)
    with pytest.raises(KeyringError, match="is active"):
        retire_master_key(keyring, keyring.active_master_key_id)


def test_active_signing_key_cannot_be_retired() -> None:
    keyring = generate_keyring(generated=False)
    with pytest.raises(KeyringError, match="is active"):
        retire_signing_key(keyring, keyring.active_signing_kid)


def test_retired_keys_are_dropped() -> None:
    keyring = add_signing_key(add_master_key(generate_keyring(generated=False)))
    old_master = next(k for k in keyring.master_keys if k != keyring.active_master_key_id)
    old_kid = next(k for k in keyring.signing_keys if k != keyring.active_signing_kid)
    retired = retire_signing_key(retire_master_key(keyring, old_master), old_kid)
    assert list(retired.master_keys) == [keyring.active_master_key_id]
    assert list(retired.signing_keys) == [keyring.active_signing_kid]
    with pytest.raises(KeyringError, match="no master key"):
        retire_master_key(retired, old_master)


# --- local key provider ------------------------------------------------------------------------


async def test_wrapped_key_unwraps_with_the_same_context() -> None:
    provider = LocalKeyProvider(generate_keyring(generated=False))
    data_key = os.urandom(32)
    wrapped = await provider.wrap(data_key, b"ctx-1")
    assert wrapped.master_key_id == provider.active_master_key_id()
    assert data_key not in wrapped.wrapped
    assert await provider.unwrap(wrapped, b"ctx-1") == data_key


async def test_wrapped_key_does_not_unwrap_under_another_context() -> None:
    provider = LocalKeyProvider(generate_keyring(generated=False))
    wrapped = await provider.wrap(os.urandom(32), b"ctx-1")
    with pytest.raises(KeyUnavailableError):
        await provider.unwrap(wrapped, b"ctx-2")


async def test_wrapped_key_relabelled_with_another_master_id_does_not_unwrap() -> None:
    keyring = generate_keyring(generated=False)
    # Two master ids holding the same key bytes: only the associated data tells them apart.
    same = keyring.master_keys[keyring.active_master_key_id]
    twin = replace(keyring, master_keys={**keyring.master_keys, "mk-twin": same})
    provider = LocalKeyProvider(twin)
    wrapped = await provider.wrap(os.urandom(32), b"ctx")
    with pytest.raises(KeyUnavailableError):
        await provider.unwrap(WrappedKey("mk-twin", wrapped.wrapped), b"ctx")


async def test_tampered_wrapped_key_does_not_unwrap() -> None:
    provider = LocalKeyProvider(generate_keyring(generated=False))
    wrapped = await provider.wrap(os.urandom(32), b"ctx")
    for index in (0, 12, len(wrapped.wrapped) - 1):
        blob = bytearray(wrapped.wrapped)
        blob[index] ^= 0x01
        with pytest.raises(KeyUnavailableError):
            await provider.unwrap(WrappedKey(wrapped.master_key_id, bytes(blob)), b"ctx")


async def test_old_master_key_unwraps_until_retired() -> None:
    keyring = generate_keyring(generated=False)
    data_key = os.urandom(32)
    old = await LocalKeyProvider(keyring).wrap(data_key, b"ctx")
    rotated = add_master_key(keyring)
    assert await LocalKeyProvider(rotated).unwrap(old, b"ctx") == data_key
    retired = LocalKeyProvider(retire_master_key(rotated, keyring.active_master_key_id))
    with pytest.raises(KeyUnavailableError, match="not in the keyring"):
        await retired.unwrap(old, b"ctx")


def test_unknown_pepper_version_is_a_clear_key_error() -> None:
    keyring = generate_keyring(generated=False)
    provider = LocalKeyProvider(keyring)
    assert provider.pepper(provider.active_pepper_version()) == keyring.peppers[keyring.active_pepper_version]
    with pytest.raises(KeyError, match=r"pepper version 'pv-unknown' is not in the keyring") as raised:
        provider.pepper("pv-unknown")
    assert isinstance(raised.value, KeyUnavailableError)


def test_signing_keys_list_the_active_one_first_with_matching_public_keys() -> None:
    keyring = add_signing_key(add_signing_key(generate_keyring(generated=True)))
    provider = LocalKeyProvider(keyring)
    keys = provider.signing_keys()
    assert keys[0].kid == keyring.active_signing_kid
    assert {k.kid for k in keys} == set(keyring.signing_keys)
    for key in keys:
        private = serialization.load_pem_private_key(key.private_pem, password=None)
        public = serialization.load_pem_public_key(key.public_pem)
        assert isinstance(private, Ed25519PrivateKey)
        assert isinstance(public, Ed25519PublicKey)
        public.verify(private.sign(b"message"), b"message")  # raises if they do not match
    assert provider.generated is True
    assert LocalKeyProvider(generate_keyring(generated=False)).generated is False
