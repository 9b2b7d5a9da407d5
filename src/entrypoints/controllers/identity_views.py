"""Domain objects to response bodies."""

from domain.orgs import Organisation
from domain.users import User
from entrypoints.dto.identity import OrgView, UserView


def user_view(user: User) -> UserView:
    return UserView(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        platform_role=str(user.platform_role),
        email_verified=user.is_verified,
        created_at=user.created_at,
    )


def org_view(org: Organisation) -> OrgView:
    return OrgView(id=org.id, name=org.name, personal=org.personal, status=str(org.status))
