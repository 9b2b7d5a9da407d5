"""Egress addresses and the orphan audit as the API shows them: one place per view."""

from application.use_cases.egress_audit import EgressAuditReport
from domain.egress import EgressAddress
from entrypoints.dto.egress import (
    AdminEgressAddress,
    EgressAuditResponse,
    EgressBinding,
    EgressLeak,
    EgressStale,
    EgressWaiting,
    MyEgressAddress,
)


def my_egress(address: EgressAddress) -> MyEgressAddress:
    return MyEgressAddress(address=address.address, state=str(address.state), since=address.since)


def admin_egress(address: EgressAddress) -> AdminEgressAddress:
    return AdminEgressAddress(
        address=address.address,
        state=str(address.state),
        since=address.since,
        user_id=address.user_id,
        provider_ref=address.provider_ref,
        grace_until=address.grace_until,
        cool_until=address.cool_until,
    )


def egress_audit(report: EgressAuditReport) -> EgressAuditResponse:
    return EgressAuditResponse(
        checked_at=report.checked_at,
        clean=report.clean,
        ledger_size=report.ledger_size,
        leaks=[EgressLeak(p.address, p.provider_ref, dict(p.labels)) for p in report.leaks],
        missing=[admin_egress(a) for a in report.missing],
        stale=[EgressStale(admin_egress(s.address), s.why) for s in report.stale],
        broken=[admin_egress(a) for a in report.broken],
        dangerous=[EgressBinding(b.user_id, b.address) for b in report.dangerous],
        stuck=[admin_egress(a) for a in report.stuck],
        waiting=[
            EgressWaiting(w.user_id, w.since, w.attempts, w.last_error, w.notified_at) for w in report.waiting
        ],
        unchecked=list(report.unchecked),
    )
