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
    adapter may commit several callers' entries together (one commit for many)."""

    async def record(self, event: AuditEvent) -> None: ...


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    checked: int  # entries verified before the answer
    first_broken_id: int | None = None
    reason: str | None = None
    unsealed: int = 0  # committed entries not yet covered by the chain (sealed within seconds)


class AuditChainVerifier(Protocol):
    async def verify(self) -> ChainCheck:
        """Re-derive the hash chain from genesis (or the first retained entry) to the sealed
        head; stop at the first broken link. Constant memory, whatever the log's length."""
        ...


@dataclass(frozen=True)
class SealReport:
    sealed: int  # entries chained by this call
    sealed_through: int  # the head's id afterwards
    unsealed: int  # committed entries after it (waiting for an older transaction, or new)


class AuditSealer(Protocol):
    """Chains committed entries in id order, never past an id that may still commit."""

    async def seal(self) -> SealReport: ...


class AuditPartitions(Protocol):
    """The audit log's monthly partitions (a no-op where the store has none)."""

    async def create_ahead(self, months: int) -> int:
        """Partitions for this month and the next `months`; how many were missing and created."""
        ...
