from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SecretContext:
    """What a ciphertext is bound to: moving it to another table, row or purpose breaks it."""

    table: str
    row_id: str
    purpose: str

    def associated_data(self) -> bytes:
        return f"bulwark/v1|{self.table}|{self.row_id}|{self.purpose}".encode()


class SecretBox(Protocol):
    async def seal(self, plaintext: bytes, context: SecretContext) -> bytes: ...

    async def open(self, envelope: bytes, context: SecretContext) -> bytes:
        """Raises SecretBoxError when the envelope is tampered with or bound elsewhere."""
        ...


class SecretBoxError(Exception):
    """A ciphertext could not be opened: wrong context, tampered, or unknown key."""
