from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PasswordCheck:
    valid: bool
    needs_rehash: bool


class PasswordHasher(Protocol):
    """Hashes run off the event loop; peppered with a server-side secret of a given version."""

    async def hash(self, password: str) -> tuple[str, str]:
        """Returns (hash, pepper_version)."""
        ...

    async def verify(self, password: str, stored_hash: str, pepper_version: str) -> PasswordCheck: ...

    async def burn(self, password: str) -> None:
        """Do the same work as a verification, for unknown accounts (no timing oracle)."""
        ...
