"""Organisations as the admin panel shows them: one place per view."""

from domain.orgs import Organisation
from entrypoints.dto.admin_orgs import AdminOrgDetail, AdminOrgSummary


def org_summary(org: Organisation) -> AdminOrgSummary:
    return AdminOrgSummary(
        id=org.id,
        name=org.name,
        personal=org.personal,
        status=str(org.status),
        require_2fa=org.require_2fa,
        created_at=org.created_at,
    )


def org_detail(org: Organisation, members: int) -> AdminOrgDetail:
    return AdminOrgDetail(
        id=org.id,
        name=org.name,
        personal=org.personal,
        status=str(org.status),
        require_2fa=org.require_2fa,
        created_at=org.created_at,
        members=members,
    )
