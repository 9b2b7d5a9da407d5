"""The 200 answer of GET /api/v1/me, shared by the route and its fast path."""

from uuid import UUID

import msgspec

from application.use_cases.profile import Profile
from application.use_cases.sessions import Principal
from entrypoints.composition import Container
from entrypoints.controllers.identity_views import org_view, user_view
from entrypoints.dto.identity import MembershipView, MeResponse

# (user, org) -> (the profile object it was encoded from, its JSON); bounded by a blunt clear.
_encoded_profiles: dict[tuple[UUID, UUID], tuple[Profile, bytes]] = {}
_ENCODED_PROFILES_MAX = 50_000


async def me_body(container: Container, principal: Principal) -> bytes:
    """The JSON body; the encoded bytes are reused for as long as the worker's profile cache
    returns the same profile object."""
    profile = await container.identity.profile(principal)
    key = (principal.user_id, principal.org_id)
    known = _encoded_profiles.get(key)
    if known is None or known[0] is not profile:
        body = msgspec.json.encode(
            MeResponse(
                user=user_view(profile.user),
                current_org=org_view(profile.current_org),
                platform_role=str(profile.user.platform_role),
                memberships=[
                    MembershipView(org=org_view(org), role=str(m.role)) for m, org in profile.memberships
                ],
            )
        )
        if len(_encoded_profiles) >= _ENCODED_PROFILES_MAX:
            _encoded_profiles.clear()
        known = _encoded_profiles[key] = (profile, body)
    return known[1]
