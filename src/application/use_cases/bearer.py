"""The check on every bearer request: a verified token whose session is not revoked.

Both halves answer from the worker's memory (verified-token cache, revocation state fed by
pub/sub); only when the revocation store is degraded does it ask the database."""

import logging
from dataclasses import dataclass
from uuid import UUID

from application.identity import IdentityDeps
from application.ports.token_issuer import InvalidToken
from application.use_cases.sessions import Principal

log = logging.getLogger("bulwark.identity")


@dataclass
class AuthenticateBearer:
    deps: IdentityDeps

    async def __call__(self, token: str) -> Principal:
        claims = self.deps.tokens.verify(token)
        if await self.deps.revocations.healthy():
            revoked = await self.deps.revocations.is_revoked(claims.sid, claims.sub, claims.org, claims.iat)
        else:
            revoked = not await self._session_live_in_database(claims.sid, claims.sub, claims.org)
        if revoked:
            raise InvalidToken("This token's session has ended.")
        return Principal(claims.sub, claims.sid, claims.org, claims.prole, claims.auth_time)

    async def _session_live_in_database(self, session_id: UUID, user_id: UUID, org_id: UUID) -> bool:
        log.warning("revocation store degraded: checking session %s in the database", session_id)
        async with self.deps.uow() as uow:
            session = await uow.sessions.get(session_id)
            if session is None or session.user_id != user_id or not session.is_live(self.deps.clock.now()):
                return False
            if session.org_id != org_id:
                return False  # a token of the org the session has since left (switch, disable)
            user = await uow.users.get(user_id)
            org = await uow.orgs.get(session.org_id)
            return user is not None and not user.is_suspended and org is not None and not org.is_disabled
