"""The egress part of a vault access: where the worker's broker traffic leaves from, and the
proxy login (username + credential, in `Proxy-Authorization: Basic`) that makes it so."""

from datetime import datetime

import msgspec

from application.egress_issuance import EgressAccess


class EgressAccessView(msgspec.Struct):
    address: str
    username: str
    credential: str
    expires_at: datetime


def egress_access_view(access: EgressAccess | None) -> EgressAccessView | None:
    if access is None:
        return None
    return EgressAccessView(
        address=access.address,
        username=access.username,
        credential=access.credential,
        expires_at=access.expires_at,
    )
