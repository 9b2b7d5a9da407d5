"""HPKE sealing of broker credentials, the vault's key file and its service tokens, as adapters."""

import base64
import os
import stat
import uuid
from pathlib import Path

import pytest

from adapters.crypto.hpke_sealing import HpkeOpener, HpkeSealer
from adapters.keys.keyring import KeyringError, generate_keyring, save_keyring
from adapters.keys.vault_keys import (
    add_opening_key,
    ensure_development_vault_keys,
    generate_vault_keys,
    load_vault_keys,
    looks_like_vault_keys,
    retire_opening_key,
    save_vault_keys,
)
from adapters.tokens.service_token_issuer import EdDsaServiceTokens
from application.ports.credential_sealing import (
    CredentialContext,
    CredentialUnreadable,
    broker_tokens_context,
)
from application.ports.service_tokens import InvalidServiceToken
from domain.brokers import SealedCredential

ROW, ORG = uuid.uuid4(), uuid.uuid4()


def pair() -> tuple[HpkeSealer, HpkeOpener]:
    keys = generate_vault_keys(generated=False)
    key_id = keys.active_opening_key_id
    return HpkeSealer(key_id, keys.public_halves()[key_id]), HpkeOpener(keys.opening_keys, key_id)


def test_what_the_sealer_seals_only_the_opener_opens_in_the_same_context() -> None:
    sealer, opener = pair()
    context = broker_tokens_context(ROW, ORG)
    sealed = sealer.seal(b"secret tokens", context)
    assert b"secret tokens" not in sealed.ciphertext
    assert opener.open(sealed, context) == b"secret tokens"
    assert sealer.seal(b"secret tokens", context).ciphertext != sealed.ciphertext  # fresh encapsulation
    for elsewhere in (
        broker_tokens_context(uuid.uuid4(), ORG),
        broker_tokens_context(ROW, uuid.uuid4()),
        CredentialContext("broker_connections", ROW, ORG, "integration_secret"),
        CredentialContext("integration_secrets", ROW, ORG, "broker_tokens"),
    ):
        with pytest.raises(CredentialUnreadable):
            opener.open(sealed, elsewhere)


def test_a_tampered_or_relabelled_ciphertext_does_not_open() -> None:
    sealer, opener = pair()
    context = broker_tokens_context(ROW, ORG)
    sealed = sealer.seal(b"secret tokens", context)
    flipped = bytearray(sealed.ciphertext)
    flipped[-1] ^= 1
    with pytest.raises(CredentialUnreadable):
        opener.open(SealedCredential(sealed.key_id, bytes(flipped)), context)
    with pytest.raises(CredentialUnreadable):
        opener.open(SealedCredential("bk-other", sealed.ciphertext), context)
    _, stranger = pair()
    with pytest.raises(CredentialUnreadable):
        stranger.open(sealed, context)


def test_rotation_keeps_old_ciphertexts_open_until_the_old_key_is_retired() -> None:
    keys = generate_vault_keys(generated=False)
    old_id = keys.active_opening_key_id
    context = broker_tokens_context(ROW, ORG)
    old_sealed = HpkeSealer(old_id, keys.public_halves()[old_id]).seal(b"v1", context)
    rotated = add_opening_key(keys)
    opener = HpkeOpener(rotated.opening_keys, rotated.active_opening_key_id)
    assert opener.active_key_id() != old_id
    assert opener.open(old_sealed, context) == b"v1"
    resealed = opener.sealer().seal(opener.open(old_sealed, context), context)
    assert resealed.key_id == rotated.active_opening_key_id
    retired = retire_opening_key(rotated, old_id)
    after = HpkeOpener(retired.opening_keys, retired.active_opening_key_id)
    assert after.open(resealed, context) == b"v1"
    with pytest.raises(CredentialUnreadable):
        after.open(old_sealed, context)
    with pytest.raises(KeyringError):
        retire_opening_key(retired, retired.active_opening_key_id)


def test_the_vault_key_file_is_private_and_never_taken_for_a_keyring(tmp_path: Path) -> None:
    path = tmp_path / "vault-keys.json"
    keys = ensure_development_vault_keys(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_vault_keys(path).opening_keys == keys.opening_keys
    assert looks_like_vault_keys(path.read_bytes())
    keyring_path = tmp_path / "keys.json"
    save_keyring(generate_keyring(generated=False), keyring_path)
    assert not looks_like_vault_keys(keyring_path.read_bytes())
    os.chmod(path, 0o644)
    with pytest.raises(KeyringError, match="permissions"):
        load_vault_keys(path)
    os.chmod(path, 0o600)
    save_vault_keys(keys, path)
    assert "opening_keys" in path.read_text() and repr(keys).count("base64") == 0
    for raw in keys.opening_keys.values():
        assert base64.b64encode(raw).decode() not in repr(keys)


def tokens(**kwargs: object) -> EdDsaServiceTokens:
    keys = generate_vault_keys(generated=False)
    defaults: dict[str, object] = {"issuer": "bulwark/vault", "audience": "bulwark-vault"}
    return EdDsaServiceTokens(keys.signing_keys, keys.active_signing_kid, **{**defaults, **kwargs})  # type: ignore[arg-type]


def test_service_tokens_verify_only_here_and_only_while_live() -> None:
    now = [1_900_000_000.0]
    issuer = tokens(clock=lambda: now[0])
    client = uuid.uuid4()
    issued = issuer.issue(client, frozenset({"broker_credentials:use"}))
    assert issued.expires_in == 300
    verified = issuer.verify(issued.token)
    assert verified.client_id == client and verified.scopes == {"broker_credentials:use"}
    with pytest.raises(InvalidServiceToken):
        tokens(clock=lambda: now[0]).verify(issued.token)  # another vault's keys
    with pytest.raises(InvalidServiceToken):
        tokens(audience="bulwark-api", clock=lambda: now[0]).verify(issued.token)
    header, payload, signature = issued.token.split(".")
    with pytest.raises(InvalidServiceToken):
        issuer.verify(f"{header}.{payload}.{_flipped(signature)}")
    unsigned = base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt"}').rstrip(b"=").decode()
    with pytest.raises(InvalidServiceToken):
        issuer.verify(f"{unsigned}.{payload}.")
    now[0] += 301
    with pytest.raises(InvalidServiceToken):
        issuer.verify(issued.token)
    for junk in ("", "a.b.c", "x" * 5000):
        with pytest.raises(InvalidServiceToken):
            issuer.verify(junk)


def _flipped(signature: str) -> str:
    """The signature with one character in its middle changed: always another signature. (Its
    last characters are no good: an Ed25519 S is below 2^253, so its top byte is often zero and
    "AA" at the end is, one time in sixteen, the signature itself.)"""
    middle = len(signature) // 2
    return signature[:middle] + ("B" if signature[middle] == "A" else "A") + signature[middle + 1 :]
