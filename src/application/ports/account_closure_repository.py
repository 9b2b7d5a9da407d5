"""Storage of account closures (the pipeline's progress) and of admins' deletion tokens."""

from datetime import datetime
from typing import Protocol
from uuid import UUID

from domain.account_closure import AccountClosure, ClosureStep, DeletionToken


class AccountClosureRepository(Protocol):
    async def add(self, closure: AccountClosure) -> bool:
        """Records the request; False when the account already has one (it is left as it is)."""
        ...

    async def get(self, user_id: UUID) -> AccountClosure | None: ...

    async def unfinished(self) -> list[AccountClosure]: ...

    async def advance(self, user_id: UUID, step: ClosureStep) -> None:
        """Records `step` as reached; never moves a closure back (a slower runner cannot undo a
        faster one's progress)."""
        ...

    async def finish(self, user_id: UUID, now: datetime) -> bool:
        """False when it was already finished."""
        ...

    async def erase_personal_data(self, user_id: UUID, placeholder_email: str, now: datetime) -> None:
        """In one statement batch: the account's email (to `placeholder_email`), display name,
        password hash and platform role; its TOTP secret, recovery codes, pending sign-in steps,
        one-time tokens, pending broker authorisations and admin credentials; the IPs and user
        agents of its sessions; and every invitation sent to its address, in any org. Ids stay."""
        ...


class DeletionTokenRepository(Protocol):
    async def add(self, token: DeletionToken) -> None: ...

    async def get(self, token_hash: str) -> DeletionToken | None: ...

    async def consume(self, token_hash: str, now: datetime) -> bool:
        """Marks an unused, unexpired token used; exactly one concurrent caller gets True."""
        ...
