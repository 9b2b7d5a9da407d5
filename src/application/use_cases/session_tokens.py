"""Refresh-token material and the two-step revocation (database truth, then the fast store)."""

import base64
import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from application.errors import RateLimited
from application.identity import IdentityDeps, RequestContext
from application.ports.rate_limiter import RateLimit

log = logging.getLogger("bulwark.identity")


def new_secret_token() -> str:
    """256 random bits, URL-safe (used in cookies and mailed links)."""
    return secrets.token_urlsafe(32)


def successor_of(raw_token: str, key: bytes) -> str:
    """The token that replaces `raw_token` on rotation, derived rather than random so that two
    tabs presenting the same token inside the grace period receive the same successor while only
    hashes are stored. Unpredictable without the server-side key."""
    digest = hmac.digest(key, b"refresh-successor|" + raw_token.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def revoke_in_store(deps: IdentityDeps, session_ids: Iterable[UUID], expires_at: datetime) -> None:
    """The database already says these sessions are dead; tell every worker. If the store is
    down, bearer checks fall back to the database, so a failure here never accepts a token.

    The entry outlives the session by one access-token lifetime: a token issued just before the
    session's absolute expiry is still refused after it."""
    keep_until = max(expires_at, deps.clock.now()) + deps.policy.access_token_ttl
    for session_id in session_ids:
        try:
            await deps.revocations.revoke_session(session_id, keep_until)
        except Exception:
            log.error("revocation store unavailable; session %s is revoked in the database only", session_id)


def tiers(name: str, subject: object, limits: Iterable[RateLimit]) -> list[tuple[str, RateLimit]]:
    """One limiter key per tier, so `5/60,20/3600` counts in both windows."""
    return [(f"{name}:{limit.window_seconds:g}:{subject}", limit) for limit in limits]


async def limit_mail_requests(deps: IdentityDeps, ctx: RequestContext, address: str) -> None:
    """Anything that mails a link (resend, forgot) shares one budget per IP and per address."""
    await enforce_limits(
        deps,
        ctx,
        tiers("mail-ip", ctx.ip, deps.policy.mail_per_ip)
        + tiers("mail-address", address, deps.policy.mail_per_address),
    )


async def enforce_limits(
    deps: IdentityDeps, ctx: RequestContext, checks: Iterable[tuple[str, RateLimit]]
) -> None:
    """Counts the request against every limit (atomically, before any expensive work) and refuses
    with the longest wait if any is exceeded; the trip is audited."""
    checks = list(checks)
    decisions = await deps.limiter.hit_many(checks)
    refused = [
        (key.split(":", 1)[0], decision.retry_after)
        for (key, _), decision in zip(checks, decisions, strict=True)
        if not decision.allowed
    ]
    if not refused:
        return
    retry_after = max(wait for _, wait in refused)
    async with deps.uow() as uow:
        await uow.audit.append(ctx.event("rate_limit.tripped", limits=[name for name, _ in refused]))
        await uow.commit()
    raise RateLimited(retry_after)
