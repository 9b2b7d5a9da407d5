"""The platform-wide audit trail for administrators: every org's entries and those of none,
filtered, newest first in keyset pages; an NDJSON export of the same filters in bounded memory;
and the hash chain's verification. Exports and verifications are audited themselves."""

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from application.audit_pages import MAX_PAGE, AuditPage, before_id_of, checked_limit, page_of
from application.errors import InvalidInput
from application.identity import RequestContext
from application.ports.audit import AuditChainVerifier, AuditSealer, ChainCheck
from application.ports.audit_query import AuditFilter
from application.ports.unit_of_work import UnitOfWorkFactory
from application.use_cases.admin_login import AdminPrincipal
from domain.audit import ActorKind, AuditRecord
from domain.text_rules import has_control_characters

# The columns' own widths: longer text can match nothing, and is refused as a mistake.
_MAX_TEXT = {"action_prefix": 100, "action": 100, "target_type": 50, "target_id": 100, "source_ip": 64}


def checked_filter(criteria: AuditFilter) -> AuditFilter:
    for name, limit in _MAX_TEXT.items():
        value = getattr(criteria, name)
        if value is None:
            continue
        if not value or len(value) > limit or has_control_characters(value):
            raise InvalidInput(f"`{name}` must be 1 to {limit} printable characters.", field=name)
    for name in ("since", "until"):
        moment = getattr(criteria, name)
        if moment is not None and (moment.tzinfo is None or moment.utcoffset() is None):
            raise InvalidInput(f"`{name}` needs a time zone (e.g. 2026-12-01T00:00:00Z).", field=name)
    if criteria.since is not None and criteria.until is not None and criteria.since >= criteria.until:
        raise InvalidInput("`since` must be before `until`.", field="since")
    return criteria


def _filter_summary(criteria: AuditFilter) -> dict[str, Any]:
    return {
        k: (v.isoformat() if hasattr(v, "isoformat") else str(v))
        for k, v in dataclasses.asdict(criteria).items()
        if v is not None
    }


@dataclass
class PlatformAuditDeps:
    uow: UnitOfWorkFactory
    verifier: AuditChainVerifier
    sealer: AuditSealer


@dataclass
class ListPlatformAudit:
    deps: PlatformAuditDeps

    async def __call__(
        self, principal: AdminPrincipal, criteria: AuditFilter, cursor: str | None, limit: int
    ) -> AuditPage:
        criteria, limit, before_id = checked_filter(criteria), checked_limit(limit), before_id_of(cursor)
        async with self.deps.uow() as uow:
            records = await uow.audit_query.page_all(criteria, before_id, limit + 1)
        return page_of(records, limit)


@dataclass
class ExportPlatformAudit:
    deps: PlatformAuditDeps

    async def __call__(
        self, principal: AdminPrincipal, criteria: AuditFilter, ctx: RequestContext
    ) -> AsyncIterator[AuditRecord]:
        """Checks the filters and audits the export before the first entry is sent, then answers
        the entries newest first, one page (and one short transaction) at a time."""
        criteria = checked_filter(criteria)
        async with self.deps.uow() as uow:
            await uow.audit.append(
                ctx.event(
                    "admin.audit.exported",
                    actor=principal.user_id,
                    actor_kind=ActorKind.ADMIN,
                    target_type="audit_log",
                    filters=_filter_summary(criteria),
                )
            )
            await uow.commit()
        return self._entries(criteria)

    async def _entries(self, criteria: AuditFilter) -> AsyncIterator[AuditRecord]:
        before_id: int | None = None
        while True:
            async with self.deps.uow() as uow:
                records = await uow.audit_query.page_all(criteria, before_id, MAX_PAGE)
            for record in records:
                yield record
            if len(records) < MAX_PAGE:
                return
            before_id = records[-1].id


@dataclass
class VerifyAuditChain:
    deps: PlatformAuditDeps

    async def __call__(self, principal: AdminPrincipal, ctx: RequestContext) -> ChainCheck:
        # Sealed first, so the check covers every entry committed so far (bar those whose
        # transaction is still open, reported as unsealed).
        await self.deps.sealer.seal()
        check = await self.deps.verifier.verify()
        async with self.deps.uow() as uow:
            await uow.audit.append(
                ctx.event(
                    "admin.audit.verified",
                    actor=principal.user_id,
                    actor_kind=ActorKind.ADMIN,
                    target_type="audit_log",
                    ok=check.ok,
                    checked=check.checked,
                    first_broken_id=check.first_broken_id,
                )
            )
            await uow.commit()
        return check
