"""Repositories and the unit of work: one transaction, rolled back unless committed."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Protocol, Self
from uuid import UUID

from application.ports.account_closure_repository import AccountClosureRepository, DeletionTokenRepository
from application.ports.audit import AuditSink
from application.ports.audit_query import AuditQuery
from application.ports.authz_repository import AuthzRepository
from application.ports.bridge_report_repository import BridgeReportRepository
from application.ports.bridge_repository import BridgeRepository
from application.ports.broker_connection_repository import BrokerConnectionRepository
from application.ports.egress_repository import EgressRepository
from application.ports.integration_secret_repository import IntegrationSecretRepository
from application.ports.mfa_repository import MfaRepository
from application.ports.platform_admin_repository import PlatformAdminRepository
from application.ports.service_client_repository import ServiceClientRepository
from domain.one_time_tokens import OneTimeToken, TokenPurpose
from domain.orgs import Membership, Organisation
from domain.sessions import RefreshToken, Session
from domain.users import User, UserStatus


@dataclass(frozen=True)
class RefreshContext:
    """What a refresh decides on, as it stood before the refresh touched anything."""

    token: RefreshToken
    session: Session
    user: User
    org: Organisation
    has_second_factor: bool


@dataclass(frozen=True)
class RefreshAttempt:
    context: RefreshContext
    rotated: bool


@dataclass(frozen=True)
class UserSearch:
    """The admin panel's account search: every given criterion must hold. Results come in
    (email, id) order, starting after `after` (the last row of the previous page)."""

    limit: int
    email_prefix: str | None = None  # canonical (lower case): matched against the stored email
    status: UserStatus | None = None
    plan: str | None = None
    org_id: UUID | None = None  # members of this org
    after: tuple[str, UUID] | None = None


@dataclass(frozen=True)
class OrgPage:
    """A page of every organisation, in (created_at, id) order, after `after`."""

    limit: int
    after: tuple[datetime, UUID] | None = None


class UserRepository(Protocol):
    async def add(self, user: User) -> None: ...

    async def search(self, criteria: UserSearch) -> list[User]: ...

    async def get(self, user_id: UUID) -> User | None: ...

    async def get_by_email(self, email: str) -> User | None: ...

    async def update(self, user: User) -> None:
        """Everything but the status, and never on a closed account: a write from an earlier
        read (a password change hashing for a while) cannot undo a pause or a closure."""
        ...

    async def set_status(
        self, user_id: UUID, status: UserStatus, now: datetime, only_from: tuple[UserStatus, ...]
    ) -> bool:
        """The status alone, only from one of `only_from` (False otherwise): decided by the row
        as it is when written, not as some earlier read saw it."""
        ...


class OrgRepository(Protocol):
    async def add(self, org: Organisation) -> None: ...

    async def lock(self, org_id: UUID) -> None:
        """Hold the org's row until commit (changes that count its administrators)."""
        ...

    async def get(self, org_id: UUID) -> Organisation | None: ...

    async def update(self, org: Organisation) -> None: ...

    async def add_membership(self, membership: Membership) -> None: ...

    async def memberships_of(self, user_id: UUID) -> list[tuple[Membership, Organisation]]: ...

    async def page(self, page: OrgPage) -> list[Organisation]: ...

    async def member_count(self, org_id: UUID) -> int: ...


class SessionRepository(Protocol):
    async def add(self, session: Session) -> None: ...

    async def start(self, session: Session, first_token: RefreshToken) -> None:
        """Adds a new session together with its first refresh token."""
        ...

    async def get(self, session_id: UUID) -> Session | None: ...

    async def amend(self, session_id: UUID, **changes: Any) -> bool:
        """Change only the named fields (last_used_at, idle_expires_at, auth_time, org_id), and only
        while the session is not revoked; False when it was revoked meanwhile."""
        ...

    async def live_for_user(self, user_id: UUID, now: datetime) -> list[Session]: ...

    async def last_started(self, user_id: UUID) -> datetime | None:
        """When the user's newest session began (their last login), revoked or not."""
        ...

    async def revoke(self, session_id: UUID, now: datetime, reason: str) -> bool:
        """Marks one live session revoked; False when it was not live."""
        ...

    async def revoke_all_for_user(
        self, user_id: UUID, now: datetime, reason: str, except_session: UUID | None = None
    ) -> list[UUID]: ...

    async def revoke_all_for_org(
        self, org_id: UUID, now: datetime, reason: str, user_id: UUID | None = None
    ) -> list[UUID]:
        """Every live session in the org (of one user, when given)."""
        ...

    async def retire_refresh_tokens(self, session_id: UUID, now: datetime) -> None: ...

    async def add_refresh_token(self, token: RefreshToken) -> None: ...

    async def get_refresh_token(self, token_hash: str) -> RefreshToken | None: ...

    async def refresh(
        self, token_hash: str, successor_hash: str, now: datetime, idle: timedelta
    ) -> "RefreshAttempt | None":
        """Reads the token with its session, user, org and whether the user has a second factor
        (None for an unknown token) and, when the token is unrotated and
        `domain.refresh_rules.may_rotate` holds, claims it, stores its successor and touches the
        session (`Session.touched`) -- atomically; of concurrent callers exactly one gets
        `rotated`. The context is the state before the rotation."""
        ...

    async def claim_refresh_token(self, token_hash: str, now: datetime, successor_hash: str) -> bool:
        """Atomically mark a live token rotated; exactly one concurrent caller gets True."""
        ...


class OneTimeTokenRepository(Protocol):
    async def add(self, token: OneTimeToken) -> None: ...

    async def get(self, token_hash: str) -> OneTimeToken | None: ...

    async def consume(self, token_hash: str, now: datetime) -> bool:
        """Atomically mark an unused token used; exactly one concurrent caller gets True."""
        ...

    async def invalidate_for_user(self, user_id: UUID, purpose: TokenPurpose, now: datetime) -> None: ...


class UnitOfWork(Protocol):
    @property
    def users(self) -> UserRepository: ...

    @property
    def orgs(self) -> OrgRepository: ...

    @property
    def sessions(self) -> SessionRepository: ...

    @property
    def one_time_tokens(self) -> OneTimeTokenRepository: ...

    @property
    def audit(self) -> AuditSink: ...

    @property
    def mfa(self) -> MfaRepository: ...

    @property
    def authz(self) -> AuthzRepository: ...

    @property
    def audit_query(self) -> AuditQuery: ...

    @property
    def broker_connections(self) -> BrokerConnectionRepository: ...

    @property
    def integration_secrets(self) -> IntegrationSecretRepository: ...

    @property
    def service_clients(self) -> ServiceClientRepository: ...

    @property
    def bridges(self) -> BridgeRepository: ...

    @property
    def bridge_reports(self) -> BridgeReportRepository: ...

    @property
    def platform_admins(self) -> PlatformAdminRepository: ...

    @property
    def account_closures(self) -> AccountClosureRepository: ...

    @property
    def deletion_tokens(self) -> DeletionTokenRepository: ...

    @property
    def egress(self) -> EgressRepository: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, *, autocommit: bool = False) -> UnitOfWork:
        """`autocommit`: where the backend allows, every statement commits on its own (no
        BEGIN/COMMIT round trips; each statement sees committed data) and `commit()` commits
        whatever the backend still holds. Only for work that reads, or whose every write is one
        statement that is correct by itself (a conditional update, a claim): nothing is rolled
        back, so a unit that needs two writes to stand or fall together must not use it. Nor may
        a unit that reads org-scoped rows: row-level security is declared per transaction."""
        ...

    async def refresh(
        self, token_hash: str, successor_hash: str, now: datetime, idle: timedelta
    ) -> RefreshAttempt | None:
        """`SessionRepository.refresh` as a unit of work of its own, committed: the service's
        most frequent write gets the cheapest way to the database the backend has."""
        ...
