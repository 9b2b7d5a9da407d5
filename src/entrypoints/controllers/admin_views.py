"""Administrators and platform audit entries as the admin panel shows them."""

from application.ports.audit import ChainCheck
from application.use_cases.admin_administrators import AdministratorView
from domain.audit import AuditRecord
from entrypoints.dto.admin import AdministratorResponse, AuditVerifyResponse, BrokenLink, PlatformAuditEntry


def administrator_view(view: AdministratorView) -> AdministratorResponse:
    return AdministratorResponse(
        user_id=view.user_id,
        email=view.email,
        display_name=view.display_name,
        state=view.state,
        account_status=view.account_status,
        created_at=view.created_at,
        factor_confirmed_at=view.factor_confirmed_at,
        locked_until=view.locked_until,
        enrolment_expires_at=view.enrolment_expires_at,
    )


def audit_entry_view(record: AuditRecord) -> PlatformAuditEntry:
    event = record.event
    return PlatformAuditEntry(
        id=record.id,
        occurred_at=record.occurred_at,
        action=event.action,
        actor_kind=str(event.actor_kind),
        actor_user_id=event.actor_user_id,
        org_id=event.org_id,
        target_type=event.target_type,
        target_id=event.target_id,
        source_ip=event.source_ip,
        user_agent=event.user_agent,
        request_id=event.request_id,
        details=dict(event.details),
        prev_hash=record.prev_hash,
        hash=record.hash,
    )


def chain_check_view(check: ChainCheck) -> AuditVerifyResponse:
    broken = None if check.first_broken_id is None else BrokenLink(check.first_broken_id, check.reason)
    return AuditVerifyResponse(
        ok=check.ok, checked=check.checked, first_broken=broken, unsealed=check.unsealed
    )
