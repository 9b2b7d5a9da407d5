"""What every identity use case needs: ports, policy and the request's context."""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

from application.ports.clock import Clock
from application.ports.mailer import Mailer
from application.ports.password_hasher import PasswordHasher
from application.ports.rate_limiter import RateLimit, RateLimiter
from application.ports.revocation_store import RevocationStore
from application.ports.secret_box import SecretBox
from application.ports.token_issuer import TokenIssuer
from application.ports.totp import QrRenderer, TotpService
from application.ports.unit_of_work import UnitOfWorkFactory
from application.profile_cache import ProfileCache
from domain.audit import ActorKind, AuditEvent

log = logging.getLogger("bulwark.identity")


@dataclass(frozen=True)
class IdentityPolicy:
    frontend_url: str
    access_token_ttl: timedelta = timedelta(minutes=15)
    session_idle: timedelta = timedelta(days=7)
    session_absolute: timedelta = timedelta(days=30)
    refresh_grace: timedelta = timedelta(seconds=10)
    verify_email_ttl: timedelta = timedelta(hours=24)
    reset_password_ttl: timedelta = timedelta(minutes=30)
    password_min_length: int = 15
    # Per account, tiered: a short burst, then a longer window -- a growing, always temporary delay.
    login_per_account: tuple[RateLimit, ...] = (RateLimit(5, 60), RateLimit(20, 3600))
    login_per_ip: tuple[RateLimit, ...] = (RateLimit(30, 300),)
    register_per_ip: tuple[RateLimit, ...] = (RateLimit(10, 3600),)
    mail_per_ip: tuple[RateLimit, ...] = (RateLimit(10, 3600),)
    mail_per_address: tuple[RateLimit, ...] = (RateLimit(3, 3600),)
    totp_issuer: str = "Bulwark"
    stepup_window: timedelta = timedelta(minutes=10)
    mfa_token_ttl: timedelta = timedelta(minutes=5)
    # Second-factor attempts, counted apart from password attempts.
    mfa_per_user: tuple[RateLimit, ...] = (RateLimit(10, 300),)
    mfa_per_ip: tuple[RateLimit, ...] = (RateLimit(30, 300),)


@dataclass(frozen=True)
class RequestContext:
    """Who is asking, as far as the transport can tell; goes into audit events and limits."""

    ip: str = "unknown"
    user_agent: str | None = None
    request_id: str | None = None

    def event(
        self,
        action: str,
        *,
        actor: UUID | None = None,
        org: UUID | None = None,
        target_type: str | None = None,
        target_id: object | None = None,
        actor_kind: ActorKind | None = None,
        **details: object,
    ) -> AuditEvent:
        return AuditEvent(
            action=action,
            actor_kind=actor_kind or (ActorKind.USER if actor else ActorKind.ANONYMOUS),
            actor_user_id=actor,
            org_id=org,
            target_type=target_type,
            target_id=str(target_id) if target_id is not None else None,
            source_ip=self.ip,
            user_agent=(self.user_agent or "")[:512] or None,
            request_id=self.request_id,
            details={k: (str(v) if isinstance(v, UUID) else v) for k, v in details.items()},
        )


@dataclass
class IdentityDeps:
    uow: UnitOfWorkFactory
    hasher: PasswordHasher
    tokens: TokenIssuer
    limiter: RateLimiter
    revocations: RevocationStore
    mailer: Mailer
    clock: Clock
    policy: IdentityPolicy
    is_common_password: Callable[[str], bool]
    totp: TotpService
    qr: QrRenderer
    secret_box: SecretBox
    profiles: ProfileCache[Any] = field(default_factory=ProfileCache)
    refresh_successor_key: bytes = field(repr=False, default=b"")
    recovery_code_key: bytes = field(repr=False, default=b"")
