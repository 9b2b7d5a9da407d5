"""Accounts as the admin panel shows them: one place per view."""

from application.use_cases.admin_users import UserDetail
from domain.plans import PlanCatalog
from domain.users import User
from entrypoints.dto.admin_users import AdminUserDetail, AdminUserOrg, AdminUserSummary


def user_summary(user: User, plans: PlanCatalog) -> AdminUserSummary:
    return AdminUserSummary(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        status=str(user.status),
        plan=user.plan,
        paying=plans.is_paying(user.plan),
        created_at=user.created_at,
    )


def user_detail(detail: UserDetail) -> AdminUserDetail:
    user = detail.user
    return AdminUserDetail(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        status=str(user.status),
        plan=user.plan,
        paying=detail.paying,
        platform_admin=detail.platform_admin,
        email_verified=user.is_verified,
        created_at=user.created_at,
        orgs=[
            AdminUserOrg(
                id=org.id, name=org.name, role=str(m.role), status=str(org.status), personal=org.personal
            )
            for m, org in detail.orgs
        ],
        two_factor_enabled=detail.two_factor_enabled,
        live_sessions=detail.live_sessions,
        broker_connections=detail.broker_connections,
        bridges=detail.bridges,
        egress_address=detail.egress_address,
        last_login_at=detail.last_login_at,
    )
