"""Forward-auth for the platform's gateways (nginx `auth_request`, Traefik ForwardAuth, Envoy
ext_authz over HTTP): who is calling, and may they do what the gateway asks? A user by bearer
token, a bridge by its key; the answer is the identity, or a refusal."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

from application.authorization import PermissionResolver
from application.bridge_lookups import BridgeKeyLookups
from application.errors import Forbidden, InvalidInput, NotAuthenticated
from application.use_cases.sessions import Principal
from domain.permissions import parse_permissions


@dataclass(frozen=True)
class ForwardIdentity:
    org_id: UUID
    user_id: UUID | None = None
    bridge_id: UUID | None = None


@dataclass
class ForwardAuth:
    authenticate: Callable[[str], Awaitable[Principal]]  # the bearer check every route uses
    resolver: PermissionResolver
    bridge_keys: BridgeKeyLookups

    async def __call__(
        self, bearer: str | None, api_key: str | None, permission: str | None, ip: str
    ) -> ForwardIdentity:
        if permission is not None:
            try:
                parse_permissions([permission])
            except ValueError:
                # The gateway's configuration is wrong: refuse rather than let anyone through.
                raise InvalidInput(f"Unknown permission {permission!r} asked by the gateway.") from None
        if bearer is not None and api_key is not None:
            raise NotAuthenticated(
                "Send a bearer token or a bridge key, not both.", code="ambiguous_credentials"
            )
        if bearer is not None:
            principal = await self.authenticate(bearer)
            if permission is not None:
                await self.resolver.require(principal, permission)
            return ForwardIdentity(org_id=principal.org_id, user_id=principal.user_id)
        if api_key is not None:
            bridge = (await self.bridge_keys.authenticate(api_key, ip)).bridge
            if permission is not None:
                raise Forbidden("A bridge holds no member's permissions.", code="permission_denied")
            return ForwardIdentity(org_id=bridge.org_id, bridge_id=bridge.id)
        raise NotAuthenticated("Send a bearer token or a bridge key.")
