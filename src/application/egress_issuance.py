"""The vault's half of the egress gateway: with a user's broker credentials it hands out the
address their traffic must leave from and a short-lived proxy credential bound to both. No live
address: nothing is issued and the access says `egress_pending` (traffic is refused, never
sent from a shared address)."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from application.ports.clock import Clock
from application.ports.egress_bindings import EgressBindingLookup
from application.ports.egress_credentials import EgressCredentialSigner
from domain.egress_credentials import check_lifetime, proxy_username


@dataclass(frozen=True)
class EgressAccess:
    address: str
    username: str
    credential: str
    expires_at: datetime


@dataclass
class EgressIssuer:
    bindings: EgressBindingLookup
    signer: EgressCredentialSigner
    clock: Clock
    lifetime: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        check_lifetime(self.lifetime)

    async def for_user(self, user_id: UUID) -> EgressAccess | None:
        address = await self.bindings.live_address(user_id)
        if address is None:
            return None
        expires_at = (self.clock.now() + self.lifetime).replace(microsecond=0)
        credential = self.signer.sign(user_id, address, expires_at)
        return EgressAccess(
            address=address,
            username=proxy_username(user_id, address, credential),
            credential=credential,
            expires_at=expires_at,
        )
