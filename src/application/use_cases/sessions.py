"""Logout and the user's own view and control of their sessions."""

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from application.errors import NotFound
from application.identity import IdentityDeps, RequestContext
from application.use_cases.session_tokens import revoke_in_store
from domain.sessions import Session, token_digest


@dataclass(frozen=True)
class Principal:
    """Who a verified, unrevoked bearer token speaks for."""

    user_id: UUID
    session_id: UUID
    org_id: UUID
    platform_role: str
    auth_time: datetime | None


@dataclass
class Logout:
    deps: IdentityDeps

    async def __call__(
        self, principal: Principal | None, raw_refresh: str | None, ctx: RequestContext
    ) -> None:
        """Revokes the session named by the bearer token, or else by the refresh cookie."""
        deps = self.deps
        now = deps.clock.now()
        async with deps.uow() as uow:
            session: Session | None = None
            if principal is not None:
                session = await uow.sessions.get(principal.session_id)
            elif raw_refresh:
                token = await uow.sessions.get_refresh_token(token_digest(raw_refresh))
                session = await uow.sessions.get(token.session_id) if token else None
            if session is None:
                return
            if await uow.sessions.revoke(session.id, now, "logout"):
                await uow.audit.append(
                    ctx.event(
                        "session.logout",
                        actor=session.user_id,
                        org=session.org_id,
                        target_type="session",
                        target_id=session.id,
                    )
                )
            await uow.commit()
        await revoke_in_store(deps, [session.id], session.absolute_expires_at)


@dataclass
class ListSessions:
    deps: IdentityDeps

    async def __call__(self, principal: Principal) -> list[Session]:
        async with self.deps.uow() as uow:
            return await uow.sessions.live_for_user(principal.user_id, self.deps.clock.now())


@dataclass
class RevokeSession:
    deps: IdentityDeps

    async def __call__(self, principal: Principal, session_id: UUID, ctx: RequestContext) -> None:
        now = self.deps.clock.now()
        async with self.deps.uow() as uow:
            session = await uow.sessions.get(session_id)
            # Another user's session id is answered exactly like a missing one.
            if session is None or session.user_id != principal.user_id or not session.is_live(now):
                raise NotFound("No such session.")
            await uow.sessions.revoke(session.id, now, "revoked_by_user")
            await uow.audit.append(
                ctx.event(
                    "session.revoked",
                    actor=principal.user_id,
                    org=principal.org_id,
                    target_type="session",
                    target_id=session.id,
                )
            )
            await uow.commit()
        await revoke_in_store(self.deps, [session.id], session.absolute_expires_at)


@dataclass
class RevokeOtherSessions:
    deps: IdentityDeps

    async def __call__(self, principal: Principal, ctx: RequestContext) -> int:
        now = self.deps.clock.now()
        async with self.deps.uow() as uow:
            ids = await uow.sessions.revoke_all_for_user(
                principal.user_id, now, "revoked_by_user", except_session=principal.session_id
            )
            await uow.audit.append(
                ctx.event(
                    "session.revoked_others",
                    actor=principal.user_id,
                    org=principal.org_id,
                    target_type="user",
                    target_id=principal.user_id,
                    count=len(ids),
                )
            )
            await uow.commit()
        await revoke_in_store(self.deps, ids, now + self.deps.policy.session_absolute)
        return len(ids)
