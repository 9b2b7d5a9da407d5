"""Refresh-token rotation with reuse (theft) detection."""

from dataclasses import dataclass
from datetime import datetime

from application.errors import NotAuthenticated
from application.identity import IdentityDeps, RequestContext
from application.ports.token_issuer import IssuedToken
from application.ports.unit_of_work import UnitOfWork
from application.use_cases.login import require_second_factor_for
from application.use_cases.session_tokens import revoke_in_store, successor_of
from domain.sessions import RETIRED_BY_SWITCH, RefreshToken, Session, token_digest
from domain.users import User


class InvalidRefreshToken(NotAuthenticated):
    """The refresh token is invalid, expired or revoked; log in again."""

    code = "invalid_refresh_token"


class RefreshTokenReused(NotAuthenticated):
    """This refresh token was already used; the session has been revoked. Log in again."""

    code = "refresh_token_reused"


@dataclass(frozen=True)
class RefreshResult:
    access: IssuedToken
    refresh_token: str
    session: Session
    user: User


@dataclass
class RefreshSession:
    deps: IdentityDeps

    async def __call__(self, raw_token: str, ctx: RequestContext) -> RefreshResult:
        deps = self.deps
        now = deps.clock.now()
        presented = token_digest(raw_token)
        successor = successor_of(raw_token, deps.refresh_successor_key)
        # The read and the rotation: a unit of their own (one statement on PostgreSQL). What
        # follows in the rare cases is one self-contained statement at a time (a revocation, a
        # re-read, an amend), so it needs no transaction either.
        attempt = await deps.uow.refresh(presented, token_digest(successor), now, deps.policy.session_idle)
        if attempt is None:
            raise InvalidRefreshToken()
        context, rotated = attempt.context, attempt.rotated
        token, session, user, org = context.token, context.session, context.user, context.org
        # The storage rotated only if `may_rotate` held; these checks tell the refusals apart.
        if not session.is_live(now):
            raise InvalidRefreshToken()
        if org.require_2fa and not context.has_second_factor:
            # The org turned the requirement on since this session began.
            raise require_second_factor_for(org)
        if user.is_suspended or org.is_disabled:
            async with deps.uow(autocommit=True) as uow:
                await uow.sessions.revoke(session.id, now, "account_or_org_inactive")
                await uow.commit()
            await revoke_in_store(deps, [session.id], session.absolute_expires_at)
            raise InvalidRefreshToken()
        session.touched(now, deps.policy.session_idle)
        reused: Session | None = None
        if not rotated:
            async with deps.uow(autocommit=True) as uow:
                token = await uow.sessions.get_refresh_token(presented) or token
                if token.rotated_at is None:
                    raise InvalidRefreshToken()  # the session was revoked while we read it
                # Already rotated (earlier, or by a concurrent request that won the claim).
                if self._raced_an_org_switch(token, now):
                    raise InvalidRefreshToken()
                if not await self._within_grace(uow, token, successor, now):
                    reused = session
                elif not await uow.sessions.amend(
                    session.id, last_used_at=session.last_used_at, idle_expires_at=session.idle_expires_at
                ):
                    raise InvalidRefreshToken()
                await uow.commit()
        if reused is not None:
            await self._revoke_for_reuse(reused, ctx, now)
            raise RefreshTokenReused()
        access = deps.tokens.issue(
            sub=user.id,
            sid=session.id,
            org=org.id,
            prole=str(user.platform_role),
            auth_time=session.auth_time,
        )
        return RefreshResult(access, successor, session, user)

    def _raced_an_org_switch(self, token: RefreshToken, now: datetime) -> bool:
        """A tab refreshing with the cookie an org switch just replaced is refused, but the session
        lives on; after the grace period the usual reuse rule applies."""
        return (
            token.successor_hash == RETIRED_BY_SWITCH
            and token.rotated_at is not None
            and now - token.rotated_at <= self.deps.policy.refresh_grace
        )

    async def _within_grace(
        self, uow: UnitOfWork, token: RefreshToken, successor: str, now: datetime
    ) -> bool:
        """Parallel tabs may present a token rotated moments ago: they get the same successor,
        as long as that successor has not itself been rotated."""
        if token.rotated_at is None or now - token.rotated_at > self.deps.policy.refresh_grace:
            return False
        if token.successor_hash != token_digest(successor):
            return False  # not the successor this server derived (key changed): treat as reuse
        current = await uow.sessions.get_refresh_token(token.successor_hash)
        return current is not None and current.rotated_at is None

    async def _revoke_for_reuse(self, session: Session, ctx: RequestContext, now: datetime) -> None:
        """The revocation and its audit event stand or fall together: a unit of their own."""
        async with self.deps.uow() as uow:
            await uow.sessions.revoke(session.id, now, "refresh_reuse")
            await uow.audit.append(
                ctx.event(
                    "session.refresh_reuse",
                    actor=session.user_id,
                    org=session.org_id,
                    target_type="session",
                    target_id=session.id,
                )
            )
            await uow.commit()
        await revoke_in_store(self.deps, [session.id], session.absolute_expires_at)
