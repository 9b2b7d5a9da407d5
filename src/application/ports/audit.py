from collections.abc import AsyncIterator
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
