"""The audit log's background work, run by each worker's periodic jobs and by `bulwark jobs run`:
seal committed entries into the hash chain, and keep the monthly partitions created ahead."""

import logging
from dataclasses import dataclass

from application.ports.audit import AuditPartitions, AuditSealer, SealReport

log = logging.getLogger("bulwark.jobs")


@dataclass
class SealAuditLog:
    sealer: AuditSealer

    async def __call__(self) -> SealReport:
        return await self.sealer.seal()


@dataclass
class KeepAuditPartitionsAhead:
    partitions: AuditPartitions
    months_ahead: int

    async def __call__(self) -> int:
        created = await self.partitions.create_ahead(self.months_ahead)
        if created:
            log.info("audit log: %s monthly partitions created ahead", created)
        return created
