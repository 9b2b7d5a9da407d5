from datetime import datetime
from typing import Protocol
from uuid import UUID


class RevocationStore(Protocol):
    """Which sessions are dead, and from when tokens of a user or an org count again.

    Implementations answer `is_revoked` from memory of the worker (fed by pub/sub), so the
    check on every bearer request costs no network round trip."""

    async def revoke_session(self, session_id: UUID, expires_at: datetime) -> None: ...

    async def set_user_not_before(self, user_id: UUID, instant: datetime) -> None: ...

    async def set_org_not_before(self, org_id: UUID, instant: datetime) -> None: ...

    async def is_revoked(
        self, session_id: UUID, user_id: UUID, org_id: UUID, issued_at: datetime
    ) -> bool: ...

    async def healthy(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
