from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from domain.audit import AuditEvent, AuditRecord


class AuditSink(Protocol):
    """Appends to the append-only, hash-chained audit log (inside the caller's transaction)."""

    async def append(self, event: AuditEvent) -> AuditRecord: ...


class AuditReader(Protocol):
    def iterate(self, batch_size: int = 1000) -> AsyncIterator[AuditRecord]:
        """Every record in chain order."""
        ...


class AuditJournal(Protocol):
    """Appends an entry on its own, durably: when `record` returns, the entry is committed. An
    adapter may commit several callers' entries together (one chain lock, one commit)."""

    async def record(self, event: AuditEvent) -> None: ...


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    checked: int  # entries verified before the answer
    first_broken_id: int | None = None
    reason: str | None = None


class AuditChainVerifier(Protocol):
    async def verify(self) -> ChainCheck:
        """Re-derive the hash chain from genesis to the committed head; stop at the first broken
        link. Constant memory, whatever the log's length."""
        ...
