"""The adapters that keep admin credentials apart from user ones: the admin-password pepper
purpose, and admin tokens that the user-token verifier refuses (and the other way round)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from adapters.keys.keyring import ensure_development_keyring
from adapters.keys.local_key_provider import LocalKeyProvider
from adapters.passwords.argon2_hasher import Argon2PasswordHasher
from adapters.tokens.admin_token_issuer import EdDsaAdminTokens
from adapters.tokens.jwt_issuer import EdDsaJwtIssuer
from application.ports.admin_tokens import InvalidAdminToken
from application.ports.token_issuer import InvalidToken

FAST = {"time_cost": 2, "memory_cost_kib": 19 * 1024, "parallelism": 1}
PASSWORD = "the very same passphrase for both 1"


@pytest.fixture
def keys(tmp_path: Path) -> LocalKeyProvider:
    return LocalKeyProvider(ensure_development_keyring(tmp_path / "keys.json"))


async def test_an_admin_password_hash_never_verifies_as_a_user_password(keys: LocalKeyProvider) -> None:
    user = Argon2PasswordHasher(keys, **FAST)
    admin = Argon2PasswordHasher(keys, pepper_purpose="admin-password", **FAST)
    try:
        admin_hash, version = await admin.hash(PASSWORD)
        user_hash, _ = await user.hash(PASSWORD)
        assert (await admin.verify(PASSWORD, admin_hash, version)).valid
        assert not (await user.verify(PASSWORD, admin_hash, version)).valid
        assert not (await admin.verify(PASSWORD, user_hash, version)).valid
    finally:
        user.close()
        admin.close()


def test_admin_and_user_tokens_are_refused_by_each_others_verifier(keys: LocalKeyProvider) -> None:
    now = datetime.now(UTC)
    users = EdDsaJwtIssuer(keys, issuer="bulwark", audience="bulwark-api", clock=lambda: now)
    admins = EdDsaAdminTokens(keys, issuer="bulwark", clock=lambda: now)
    admin_token = admins.issue(uuid4(), uuid4(), now, now + timedelta(hours=8))
    user_token = users.issue(uuid4(), uuid4(), uuid4(), "user", now).token
    assert admins.verify(admin_token).exp > now
    with pytest.raises(InvalidToken):
        users.verify(admin_token)
    with pytest.raises(InvalidAdminToken):
        admins.verify(user_token)
    # Even a user issuer configured with the admin audience cannot mint a token admins accept:
    # the token type is pinned as well.
    confused = EdDsaJwtIssuer(keys, issuer="bulwark", audience="bulwark-admin", clock=lambda: now)
    with pytest.raises(InvalidAdminToken):
        admins.verify(confused.issue(uuid4(), uuid4(), uuid4(), "user", now).token)


def test_an_admin_token_dies_at_its_expiry(keys: LocalKeyProvider) -> None:
    at = [datetime.now(UTC)]
    admins = EdDsaAdminTokens(keys, issuer="bulwark", clock=lambda: at[0])
    token = admins.issue(uuid4(), uuid4(), at[0], at[0] + timedelta(hours=8))
    at[0] += timedelta(hours=8)
    with pytest.raises(InvalidAdminToken):
        admins.verify(token)


def test_the_production_admin_cookie_is_host_only_strict_and_http_only() -> None:
    from entrypoints.http.cookies import admin_cookie_header, admin_cookie_name, cleared_admin_cookie_header

    name = admin_cookie_name(production=True)
    assert name == "__Host-bulwark_admin"
    header = admin_cookie_header(name, "a.b.c", 28800)
    assert header == "__Host-bulwark_admin=a.b.c; Max-Age=28800; Path=/; HttpOnly; Secure; SameSite=Strict"
    assert cleared_admin_cookie_header(name).startswith("__Host-bulwark_admin=; Max-Age=0;")
    with pytest.raises(ValueError):
        admin_cookie_header(name, "a;b", 10)  # nothing that could end or extend the header
