"""Password hashing (argon2id with a server-side pepper) and the common-password blocklist."""

from adapters.passwords.argon2_hasher import Argon2PasswordHasher
from adapters.passwords.blocklist import common_passwords, is_common_password

__all__ = ["Argon2PasswordHasher", "common_passwords", "is_common_password"]
