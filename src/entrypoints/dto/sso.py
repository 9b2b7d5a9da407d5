"""Bodies of the single sign-on and linked-identity endpoints."""

from datetime import datetime
from uuid import UUID

import msgspec

from entrypoints.dto.identity import WriteBody


class LinkIdentityRequest(WriteBody):
    return_to: str | None = None


class LinkStarted(msgspec.Struct):
    authorization_url: str


class IdentityView(msgspec.Struct):
    id: UUID
    provider: str
    email: str | None
    linked_at: datetime


class IdentityList(msgspec.Struct):
    identities: list[IdentityView]
