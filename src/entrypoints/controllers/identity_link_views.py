"""Linked sign-in identities as the API shows them (the one place they are converted)."""

from domain.sso import SsoIdentity
from entrypoints.dto.sso import IdentityView


def identity_view(identity: SsoIdentity) -> IdentityView:
    return IdentityView(
        id=identity.id, provider=str(identity.provider), email=identity.email, linked_at=identity.linked_at
    )
