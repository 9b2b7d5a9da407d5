"""A user closing their own account: password (and code when 2FA is on), a recent
authentication, and no org left without an administrator; then the closure pipeline."""

from dataclasses import dataclass

from application.account_closure import ClosurePipeline, OrgHandoverRequired, handover_blockers, open_closure
from application.errors import NotAuthenticated
from application.identity import IdentityDeps, RequestContext
from application.platform_admin_guard import keep_an_admin
from application.step_up import require_recent_auth
from application.use_cases.sessions import Principal
from application.use_cases.two_factor import (
    InvalidMfaCode,
    SecondFactor,
    WrongPassword,
    limit_password_checks,
)
from domain.account_closure import ClosureRequester


@dataclass
class CloseOwnAccount:
    deps: IdentityDeps
    pipeline: ClosurePipeline

    async def __call__(
        self, principal: Principal, password: str, code: str | None, ctx: RequestContext
    ) -> None:
        deps = self.deps
        require_recent_auth(principal.auth_time, deps.clock.now(), deps.policy.stepup_window)
        await limit_password_checks(deps, principal, ctx)
        second = SecondFactor(deps)
        secret = await second.secret_of(principal.user_id)
        async with deps.uow() as uow:
            user = await uow.users.get(principal.user_id)
        if user is None or user.is_suspended:
            raise NotAuthenticated()
        # No unit of work is open while argon2 runs (SQLite has one writer).
        if not (await deps.hasher.verify(password, user.password_hash, user.pepper_version)).valid:
            async with deps.uow() as uow:
                await uow.audit.append(
                    ctx.event(
                        "account.close_failed",
                        actor=user.id,
                        org=principal.org_id,
                        target_type="user",
                        target_id=user.id,
                        reason="wrong_password",
                    )
                )
                await uow.commit()
            raise WrongPassword()
        if secret is not None:
            await second.limit(user.id, ctx)
        now = deps.clock.now()
        async with deps.uow() as uow:
            user = await uow.users.get(principal.user_id)
            if user is None or user.is_suspended:
                raise NotAuthenticated()
            if secret is not None:
                method = await second.check(
                    uow, user, ctx, secret=secret, code=code, recovery_code=None, org_id=principal.org_id
                )
                if method is None:
                    await uow.commit()  # the failure's audit entry
                    raise InvalidMfaCode()
            blocking = await handover_blockers(uow, user.id)
            if blocking:
                raise OrgHandoverRequired(blocking)
            # The platform's last administrator cannot leave it through the user API either.
            await keep_an_admin(uow, user.id)
            versions = await open_closure(uow, user, user.id, ClosureRequester.USER, now)
            await uow.audit.append(
                ctx.event(
                    "account.closure_requested",
                    actor=user.id,
                    org=principal.org_id,
                    target_type="user",
                    target_id=user.id,
                    org_ids=[str(org_id) for org_id, _ in versions],
                )
            )
            await uow.commit()
        await self.pipeline.requested(user.id, versions)
        await self.pipeline.run_now(user.id)
