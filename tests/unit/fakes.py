"""In-memory fakes of every port the identity use cases need: no I/O, no database, no Redis.

The unit of work behaves like a READ COMMITTED transaction, as the SQL one does on PostgreSQL:
a unit sees committed rows plus its own writes, its writes reach other units only on commit,
and leaving `async with` without committing (or by an exception) drops them. Every write takes
the row's lock until the unit commits or ends; a write to a row another unit holds waits, then
re-reads the committed row. That is what makes the conditional writes (claim_refresh_token,
consume, use_recovery_code, ...) give True to exactly one of several concurrent callers, and
what makes a deadlock (a unit waiting on one its own task still holds) fail fast instead of hanging.
"""

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import secrets
import uuid
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from copy import deepcopy
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote
from uuid import UUID

from application.errors import Conflict
from application.identity import IdentityDeps, IdentityPolicy, RequestContext
from application.ports.mailer import MailMessage
from application.ports.password_hasher import PasswordCheck
from application.ports.rate_limiter import LimitDecision, RateLimit
from application.ports.secret_box import SecretBoxError, SecretContext
from application.ports.token_issuer import AccessClaims, InvalidToken, IssuedToken
from application.ports.totp import TOTP_DRIFT_STEPS, TOTP_PERIOD_SECONDS
from application.ports.unit_of_work import RefreshAttempt, RefreshContext
from application.use_cases.bearer import AuthenticateBearer
from application.use_cases.login import Login, LoginResult
from application.use_cases.sessions import Principal
from domain.audit import GENESIS_HASH, ActorKind, AuditEvent, AuditRecord, chain_hash, normalise_details
from domain.mfa import MFA_MAX_FAILURES, MfaChallenge, TotpCredential
from domain.one_time_tokens import OneTimeToken, TokenPurpose
from domain.orgs import Membership, Organisation, OrgRole
from domain.password_policy import normalise_password
from domain.permissions import ADMINISTRATOR_ROLE_ID
from domain.refresh_rules import may_rotate
from domain.sessions import RefreshToken, Session
from domain.users import User, UserStatus
from tests.unit.fake_authz_repository import FakeAuthzRepository, MemberRoleRow
from tests.unit.fake_sso_repository import FakeSsoRepository

T = TypeVar("T")

USERS = "users"
USER_EMAILS = "users.email"  # the unique index on users.email, as its own lockable "table"
ORGS = "organisations"
MEMBERSHIPS = "memberships"
SESSIONS = "sessions"
REFRESH_TOKENS = "refresh_tokens"
ONE_TIME_TOKENS = "one_time_tokens"
TOTP = "totp_credentials"
RECOVERY_CODES = "recovery_codes"
CHALLENGES = "mfa_challenges"
AUDIT_HEAD = "audit_chain_head"
MEMBER_ROLES = "member_roles"

# Far longer than any step of a unit test; only a deadlock waits this long.
LOCK_WAIT_SECONDS = 2.0
START = datetime(2031, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)  # microseconds on purpose: tokens floor them


class LockWaitTimeout(RuntimeError):
    """A unit of work waited for a row another unit holds: in this single event loop that is a
    deadlock (typically a nested unit of work writing a row its own task already locked)."""


class IntegrityViolation(RuntimeError):
    """A primary-key or foreign-key violation the database would refuse."""


class _Deleted:
    pass


_DELETED = _Deleted()


@dataclass
class RecoveryCodeRow:
    code_hash: str
    user_id: UUID
    created_at: datetime
    used_at: datetime | None = None


class InMemoryDatabase:
    """The committed state, shared by every unit of work of one fake deployment."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.tables: dict[str, dict[Hashable, Any]] = defaultdict(dict)
        self.audit: list[AuditRecord] = []
        self.locks: dict[tuple[str, Hashable], object] = {}
        self.released = asyncio.Condition()
        self.clock = clock
        self.commits = 0
        self.rollbacks = 0

    # -- committed state, for seeding and asserting in tests ---------------------------------

    def get(self, table: str, key: Hashable) -> Any:
        """The committed row, or None (typed Any so tests can assert on fields directly)."""
        return deepcopy(self.tables[table].get(key))

    def rows(self, table: str) -> list[Any]:
        return [deepcopy(row) for row in self.tables[table].values()]

    def put(self, table: str, key: Hashable, row: Any) -> None:
        """Write committed state directly (test set-up), bypassing units of work."""
        self.tables[table][key] = deepcopy(row)
        if table == USERS:
            self.tables[USER_EMAILS][row.email] = row.id

    def user_by_email(self, email: str) -> Any:
        user_id = self.tables[USER_EMAILS].get(email)
        return self.get(USERS, user_id) if user_id is not None else None

    def audit_actions(self) -> list[str]:
        return [record.event.action for record in self.audit]

    def audit_events(self, action: str) -> list[AuditEvent]:
        return [record.event for record in self.audit if record.event.action == action]


class _Transaction:
    """One unit's journal of writes and the row locks it holds."""

    def __init__(self, db: InMemoryDatabase) -> None:
        self.db = db
        self.writes: dict[str, dict[Hashable, Any]] = defaultdict(dict)
        self.audit: list[AuditRecord] = []
        self.held: set[tuple[str, Hashable]] = set()

    def get(self, table: str, key: Hashable) -> Any | None:
        if key in self.writes[table]:
            pending = self.writes[table][key]
            return None if pending is _DELETED else deepcopy(pending)
        return deepcopy(self.db.tables[table].get(key))

    def rows(self, table: str) -> list[Any]:
        merged = dict(self.db.tables[table])
        for key, row in self.writes[table].items():
            if row is _DELETED:
                merged.pop(key, None)
            else:
                merged[key] = row
        return [deepcopy(row) for row in merged.values()]

    def put(self, table: str, key: Hashable, row: Any) -> None:
        self.writes[table][key] = deepcopy(row)

    def delete(self, table: str, key: Hashable) -> None:
        self.writes[table][key] = _DELETED

    def require(self, table: str, key: Hashable | None) -> None:
        if key is not None and self.get(table, key) is None:
            raise IntegrityViolation(f"foreign key: no {table} row {key!r}")

    async def lock(self, table: str, key: Hashable) -> None:
        row = (table, key)
        if row in self.held:
            return
        released = self.db.released
        async with released:
            try:
                await asyncio.wait_for(
                    released.wait_for(lambda: self.db.locks.get(row) in (None, self)), LOCK_WAIT_SECONDS
                )
            except TimeoutError:
                raise LockWaitTimeout(f"waited {LOCK_WAIT_SECONDS}s for the lock on {row}") from None
            self.db.locks[row] = self
        self.held.add(row)

    async def release(self) -> None:
        if not self.held:
            return
        async with self.db.released:
            for row in self.held:
                if self.db.locks.get(row) is self:
                    del self.db.locks[row]
            self.held.clear()
            self.db.released.notify_all()

    def apply(self) -> None:
        for table, writes in self.writes.items():
            for key, row in writes.items():
                if row is _DELETED:
                    self.db.tables[table].pop(key, None)
                else:
                    self.db.tables[table][key] = row
        self.db.audit.extend(self.audit)
        self.db.commits += 1
        self.writes.clear()
        self.audit = []

    def discard(self) -> None:
        if self.writes or self.audit:
            self.db.rollbacks += 1
        self.writes.clear()
        self.audit = []


class FakeUserRepository:
    def __init__(self, tx: _Transaction) -> None:
        self.tx = tx

    async def add(self, user: User) -> None:
        # The unique index: a concurrent insert of the same address waits, then conflicts.
        await self.tx.lock(USERS, user.id)
        await self.tx.lock(USER_EMAILS, user.email)
        if self.tx.get(USERS, user.id) is not None or self.tx.get(USER_EMAILS, user.email) is not None:
            raise Conflict("A user with this email address already exists.")
        self.tx.require(ORGS, user.default_org_id)
        self.tx.put(USERS, user.id, user)
        self.tx.put(USER_EMAILS, user.email, user.id)

    async def get(self, user_id: UUID) -> User | None:
        user: User | None = self.tx.get(USERS, user_id)
        return user

    async def get_by_email(self, email: str) -> User | None:
        user_id = self.tx.get(USER_EMAILS, email)
        return await self.get(user_id) if user_id is not None else None

    async def update(self, user: User) -> None:
        await self.tx.lock(USERS, user.id)
        before: User | None = self.tx.get(USERS, user.id)
        if before is None:
            return
        if before.email != user.email:
            await self.tx.lock(USER_EMAILS, user.email)
            if self.tx.get(USER_EMAILS, user.email) is not None:
                raise Conflict("A user with this email address already exists.")
            self.tx.delete(USER_EMAILS, before.email)
            self.tx.put(USER_EMAILS, user.email, user.id)
        self.tx.require(ORGS, user.default_org_id)
        if before.status is UserStatus.CLOSED:
            return  # as the SQL repository: nothing rewrites a closed account
        self.tx.put(USERS, user.id, replace(user, status=before.status))  # the status is set_status's

    async def set_status(
        self, user_id: UUID, status: UserStatus, now: datetime, only_from: tuple[UserStatus, ...]
    ) -> bool:
        await self.tx.lock(USERS, user_id)
        current: User | None = self.tx.get(USERS, user_id)
        if current is None or current.status not in only_from:
            return False
        self.tx.put(USERS, user_id, replace(current, status=status, updated_at=now))
        return True


class FakeOrgRepository:
    def __init__(self, tx: _Transaction) -> None:
        self.tx = tx

    async def add(self, org: Organisation) -> None:
        await _insert(self.tx, ORGS, org.id, org)

    async def lock(self, org_id: UUID) -> None:
        await self.tx.lock(ORGS, org_id)

    async def get(self, org_id: UUID) -> Organisation | None:
        org: Organisation | None = self.tx.get(ORGS, org_id)
        return org

    async def update(self, org: Organisation) -> None:
        await self.tx.lock(ORGS, org.id)
        if self.tx.get(ORGS, org.id) is not None:
            self.tx.put(ORGS, org.id, org)

    async def add_membership(self, membership: Membership) -> None:
        self.tx.require(ORGS, membership.org_id)
        self.tx.require(USERS, membership.user_id)
        await _insert(self.tx, MEMBERSHIPS, (membership.org_id, membership.user_id), membership)

    async def memberships_of(self, user_id: UUID) -> list[tuple[Membership, Organisation]]:
        result = []
        for membership in self.tx.rows(MEMBERSHIPS):
            if membership.user_id == user_id:
                org = self.tx.get(ORGS, membership.org_id)
                if org is not None:
                    result.append((membership, org))
        result.sort(key=lambda pair: (pair[0].created_at, pair[1].name))
        return result


class FakeSessionRepository:
    def __init__(self, tx: _Transaction) -> None:
        self.tx = tx

    async def add(self, session: Session) -> None:
        self.tx.require(USERS, session.user_id)
        self.tx.require(ORGS, session.org_id)
        await _insert(self.tx, SESSIONS, session.id, session)

    async def start(self, session: Session, first_token: RefreshToken) -> None:
        await self.add(session)
        await self.add_refresh_token(first_token)

    async def get(self, session_id: UUID) -> Session | None:
        session: Session | None = self.tx.get(SESSIONS, session_id)
        return session

    async def amend(self, session_id: UUID, **changes: Any) -> bool:
        await self.tx.lock(SESSIONS, session_id)
        current: Session | None = self.tx.get(SESSIONS, session_id)
        if current is None or current.revoked_at is not None:
            return False
        self.tx.put(SESSIONS, session_id, replace(current, **changes))
        return True

    async def live_for_user(self, user_id: UUID, now: datetime) -> list[Session]:
        live = [s for s in self.tx.rows(SESSIONS) if s.user_id == user_id and s.is_live(now)]
        return sorted(live, key=lambda s: s.last_used_at, reverse=True)

    async def revoke(self, session_id: UUID, now: datetime, reason: str) -> bool:
        await self.tx.lock(SESSIONS, session_id)
        session: Session | None = self.tx.get(SESSIONS, session_id)
        if session is None or session.revoked_at is not None:
            return False
        session.revoked_at, session.revoked_reason = now, reason
        self.tx.put(SESSIONS, session_id, session)
        return True

    async def revoke_all_for_user(
        self, user_id: UUID, now: datetime, reason: str, except_session: UUID | None = None
    ) -> list[UUID]:
        ids = [
            s.id
            for s in self.tx.rows(SESSIONS)
            if s.user_id == user_id and s.revoked_at is None and s.id != except_session
        ]
        for session_id in ids:
            await self.revoke(session_id, now, reason)
        return ids

    async def revoke_all_for_org(
        self, org_id: UUID, now: datetime, reason: str, user_id: UUID | None = None
    ) -> list[UUID]:
        ids = [
            s.id
            for s in self.tx.rows(SESSIONS)
            if s.org_id == org_id and s.revoked_at is None and user_id in (None, s.user_id)
        ]
        for session_id in ids:
            await self.revoke(session_id, now, reason)
        return ids

    async def retire_refresh_tokens(self, session_id: UUID, now: datetime) -> None:
        for token in self.tx.rows(REFRESH_TOKENS):
            if token.session_id == session_id and token.rotated_at is None:
                await self.tx.lock(REFRESH_TOKENS, token.token_hash)
                current: RefreshToken | None = self.tx.get(REFRESH_TOKENS, token.token_hash)
                if current is not None and current.rotated_at is None:
                    current.rotated_at = now
                    self.tx.put(REFRESH_TOKENS, token.token_hash, current)

    async def add_refresh_token(self, token: RefreshToken) -> None:
        self.tx.require(SESSIONS, token.session_id)
        await _insert(self.tx, REFRESH_TOKENS, token.token_hash, token)

    async def get_refresh_token(self, token_hash: str) -> RefreshToken | None:
        token: RefreshToken | None = self.tx.get(REFRESH_TOKENS, token_hash)
        return token

    async def refresh(
        self, token_hash: str, successor_hash: str, now: datetime, idle: timedelta
    ) -> RefreshAttempt | None:
        token = await self.get_refresh_token(token_hash)
        session = await self.get(token.session_id) if token is not None else None
        if token is None or session is None:
            return None
        user: User | None = self.tx.get(USERS, session.user_id)
        org: Organisation | None = self.tx.get(ORGS, session.org_id)
        if user is None or org is None:
            return None
        credential: TotpCredential | None = self.tx.get(TOTP, user.id)
        has_second_factor = credential is not None and credential.enabled
        context = RefreshContext(token, session, user, org, has_second_factor)  # copies already
        if token.rotated_at is not None or not may_rotate(session, user, org, has_second_factor, now):
            return RefreshAttempt(context, rotated=False)
        if not await self.claim_refresh_token(token_hash, now, successor_hash):
            return RefreshAttempt(context, rotated=False)
        touched = deepcopy(session)
        touched.touched(now, idle)
        await self.add_refresh_token(RefreshToken(successor_hash, session.id, now))
        rotated = await self.amend(session.id, last_used_at=now, idle_expires_at=touched.idle_expires_at)
        return RefreshAttempt(context, rotated=rotated)

    async def claim_refresh_token(self, token_hash: str, now: datetime, successor_hash: str) -> bool:
        await self.tx.lock(REFRESH_TOKENS, token_hash)
        token: RefreshToken | None = self.tx.get(REFRESH_TOKENS, token_hash)
        if token is None or token.rotated_at is not None:
            return False
        token.rotated_at, token.successor_hash = now, successor_hash
        self.tx.put(REFRESH_TOKENS, token_hash, token)
        return True


class FakeOneTimeTokenRepository:
    def __init__(self, tx: _Transaction) -> None:
        self.tx = tx

    async def add(self, token: OneTimeToken) -> None:
        self.tx.require(USERS, token.user_id)
        await _insert(self.tx, ONE_TIME_TOKENS, token.token_hash, token)

    async def get(self, token_hash: str) -> OneTimeToken | None:
        token: OneTimeToken | None = self.tx.get(ONE_TIME_TOKENS, token_hash)
        return token

    async def consume(self, token_hash: str, now: datetime) -> bool:
        await self.tx.lock(ONE_TIME_TOKENS, token_hash)
        token: OneTimeToken | None = self.tx.get(ONE_TIME_TOKENS, token_hash)
        if token is None or token.used_at is not None:
            return False
        token.used_at = now
        self.tx.put(ONE_TIME_TOKENS, token_hash, token)
        return True

    async def invalidate_for_user(self, user_id: UUID, purpose: TokenPurpose, now: datetime) -> None:
        for token in self.tx.rows(ONE_TIME_TOKENS):
            if token.user_id == user_id and token.purpose is purpose and token.used_at is None:
                await self.consume(token.token_hash, now)


class FakeMfaRepository:
    def __init__(self, tx: _Transaction) -> None:
        self.tx = tx

    async def get_totp(self, user_id: UUID) -> TotpCredential | None:
        credential: TotpCredential | None = self.tx.get(TOTP, user_id)
        return credential

    async def put_pending_totp(self, credential: TotpCredential) -> None:
        await self.tx.lock(TOTP, credential.user_id)
        existing: TotpCredential | None = self.tx.get(TOTP, credential.user_id)
        if existing is not None and existing.confirmed_at is not None:
            raise IntegrityViolation("a confirmed TOTP credential already exists")
        self.tx.require(USERS, credential.user_id)
        self.tx.put(
            TOTP, credential.user_id, dataclasses.replace(credential, confirmed_at=None, last_step=None)
        )

    async def confirm_totp(self, user_id: UUID, now: datetime, step: int) -> bool:
        await self.tx.lock(TOTP, user_id)
        credential: TotpCredential | None = self.tx.get(TOTP, user_id)
        if credential is None or credential.confirmed_at is not None:
            return False
        credential.confirmed_at, credential.last_step = now, step
        self.tx.put(TOTP, user_id, credential)
        return True

    async def advance_totp_step(self, user_id: UUID, step: int) -> bool:
        await self.tx.lock(TOTP, user_id)
        credential: TotpCredential | None = self.tx.get(TOTP, user_id)
        if credential is None or (credential.last_step is not None and credential.last_step >= step):
            return False
        credential.last_step = step
        self.tx.put(TOTP, user_id, credential)
        return True

    async def delete_totp(self, user_id: UUID) -> None:
        await self.tx.lock(TOTP, user_id)
        self.tx.delete(TOTP, user_id)
        for row in self.tx.rows(RECOVERY_CODES):
            if row.user_id == user_id:
                await self.tx.lock(RECOVERY_CODES, row.code_hash)
                self.tx.delete(RECOVERY_CODES, row.code_hash)

    async def replace_recovery_codes(self, user_id: UUID, code_hashes: list[str], now: datetime) -> None:
        for row in self.tx.rows(RECOVERY_CODES):
            if row.user_id == user_id:
                await self.tx.lock(RECOVERY_CODES, row.code_hash)
                self.tx.delete(RECOVERY_CODES, row.code_hash)
        self.tx.require(USERS, user_id)
        for code_hash in code_hashes:
            await _insert(self.tx, RECOVERY_CODES, code_hash, RecoveryCodeRow(code_hash, user_id, now))

    async def use_recovery_code(self, user_id: UUID, code_hash: str, now: datetime) -> bool:
        await self.tx.lock(RECOVERY_CODES, code_hash)
        row: RecoveryCodeRow | None = self.tx.get(RECOVERY_CODES, code_hash)
        if row is None or row.user_id != user_id or row.used_at is not None:
            return False
        row.used_at = now
        self.tx.put(RECOVERY_CODES, code_hash, row)
        return True

    async def recovery_codes_left(self, user_id: UUID) -> int:
        return sum(
            1 for row in self.tx.rows(RECOVERY_CODES) if row.user_id == user_id and row.used_at is None
        )

    async def drop_challenges(self, user_id: UUID) -> None:
        for challenge in [c for c in self.tx.rows(CHALLENGES) if c.user_id == user_id]:
            await self.tx.lock(CHALLENGES, challenge.token_hash)
            self.tx.delete(CHALLENGES, challenge.token_hash)

    async def add_challenge(self, challenge: MfaChallenge) -> None:
        self.tx.require(USERS, challenge.user_id)
        await _insert(self.tx, CHALLENGES, challenge.token_hash, challenge)

    async def get_challenge(self, token_hash: str) -> MfaChallenge | None:
        challenge: MfaChallenge | None = self.tx.get(CHALLENGES, token_hash)
        return challenge

    async def record_challenge_failure(self, token_hash: str) -> None:
        await self.tx.lock(CHALLENGES, token_hash)
        challenge: MfaChallenge | None = self.tx.get(CHALLENGES, token_hash)
        if challenge is not None:
            challenge.failures += 1
            self.tx.put(CHALLENGES, token_hash, challenge)

    async def consume_challenge(self, token_hash: str, now: datetime) -> bool:
        await self.tx.lock(CHALLENGES, token_hash)
        challenge: MfaChallenge | None = self.tx.get(CHALLENGES, token_hash)
        if (
            challenge is None
            or challenge.used_at is not None
            or challenge.failures >= MFA_MAX_FAILURES
            or not now < challenge.expires_at
        ):
            return False
        challenge.used_at = now
        self.tx.put(CHALLENGES, token_hash, challenge)
        return True


class FakeAuditSink:
    """Hash-chained like the SQL log; appends serialise on the chain head, as there."""

    def __init__(self, tx: _Transaction) -> None:
        self.tx = tx

    async def append(self, event: AuditEvent) -> AuditRecord:
        await self.tx.lock(AUDIT_HEAD, 1)
        event = dataclasses.replace(
            event, actor_kind=ActorKind(event.actor_kind), details=normalise_details(event.details)
        )
        chain = self.tx.db.audit + self.tx.audit  # the chain head is locked: nobody else appends
        previous = chain[-1] if chain else None
        prev_id, prev_hash = (previous.id, previous.hash) if previous else (0, GENESIS_HASH)
        occurred_at = self.tx.db.clock()
        record = AuditRecord(
            id=prev_id + 1,
            occurred_at=occurred_at,
            event=event,
            prev_hash=prev_hash,
            hash=chain_hash(prev_hash, prev_id + 1, occurred_at, event),
        )
        self.tx.audit.append(record)
        return record


class FakeAuditQuery:
    """An org's committed audit entries, newest first (a unit sees its own appends only after
    commit here; the identity use cases never read back what they wrote)."""

    def __init__(self, tx: _Transaction) -> None:
        self.tx = tx

    async def page(self, org_id: UUID, criteria: Any, before_id: int | None, limit: int) -> list[AuditRecord]:
        def wanted(record: AuditRecord) -> bool:
            event = record.event
            return (
                event.org_id == org_id
                and (criteria.actor is None or event.actor_user_id == criteria.actor)
                and (criteria.action is None or event.action == criteria.action)
                and (criteria.target_type is None or event.target_type == criteria.target_type)
                and (criteria.target_id is None or event.target_id == criteria.target_id)
                and (criteria.since is None or record.occurred_at >= criteria.since)
                and (criteria.until is None or record.occurred_at < criteria.until)
                and (before_id is None or record.id < before_id)
            )

        return [r for r in reversed(self.tx.db.audit) if wanted(r)][:limit]


async def _insert(tx: _Transaction, table: str, key: Hashable, row: Any) -> None:
    await tx.lock(table, key)
    if tx.get(table, key) is not None:
        raise IntegrityViolation(f"duplicate key {key!r} in {table}")
    tx.put(table, key, row)


class FakeUnitOfWork:
    users: FakeUserRepository
    orgs: FakeOrgRepository
    sessions: FakeSessionRepository
    one_time_tokens: FakeOneTimeTokenRepository
    audit: FakeAuditSink
    mfa: FakeMfaRepository
    authz: FakeAuthzRepository
    audit_query: FakeAuditQuery
    sso: FakeSsoRepository

    def __init__(self, db: InMemoryDatabase) -> None:
        self.db = db
        self._tx: _Transaction | None = None

    async def __aenter__(self) -> Self:
        tx = self._tx = _Transaction(self.db)
        self.users = FakeUserRepository(tx)
        self.orgs = FakeOrgRepository(tx)
        self.sessions = FakeSessionRepository(tx)
        self.one_time_tokens = FakeOneTimeTokenRepository(tx)
        self.audit = FakeAuditSink(tx)
        self.mfa = FakeMfaRepository(tx)
        self.authz = FakeAuthzRepository(tx)
        self.audit_query = FakeAuditQuery(tx)
        self.sso = FakeSsoRepository(tx)
        return self

    async def commit(self) -> None:
        assert self._tx is not None, "commit outside `async with`"
        self._tx.apply()
        await self._tx.release()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._tx is not None:
            self._tx.discard()
            await self._tx.release()
        self._tx = None


class FakeUnitOfWorkFactory:
    def __init__(self, db: InMemoryDatabase) -> None:
        self.db = db
        self.opened = 0

    def __call__(self, *, autocommit: bool = False) -> FakeUnitOfWork:
        self.opened += 1
        return FakeUnitOfWork(self.db)

    async def refresh(
        self, token_hash: str, successor_hash: str, now: datetime, idle: timedelta
    ) -> RefreshAttempt | None:
        async with self() as uow:
            attempt = await uow.sessions.refresh(token_hash, successor_hash, now, idle)
            await uow.commit()
        return attempt


# -- the other ports ---------------------------------------------------------------------------


class FakeClock:
    """Pinned; moves only when a test advances it."""

    def __init__(self, start: datetime = START) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        self.current += delta if delta is not None else timedelta(**kwargs)
        return self.current


class FakePasswordHasher:
    """Deterministic and instant; records every call (in `calls` and the shared `trace`).
    Hashes under the pepper version current at hashing time; a hash under an older version
    still verifies but asks for a rehash, like the real one after a pepper rotation."""

    def __init__(self, trace: list[str], pepper_version: str = "p1") -> None:
        self.trace = trace
        self.pepper_version = pepper_version
        self.calls: list[tuple[str, str]] = []

    @staticmethod
    def digest(password: str, pepper_version: str) -> str:
        material = f"{pepper_version}|{normalise_password(password)}".encode()
        return f"fake${pepper_version}${hashlib.sha256(material).hexdigest()}"

    def _record(self, what: str, password: str) -> None:
        self.calls.append((what, password))
        self.trace.append(f"hasher.{what}")

    @property
    def burns(self) -> list[str]:
        return [password for what, password in self.calls if what == "burn"]

    async def hash(self, password: str) -> tuple[str, str]:
        self._record("hash", password)
        return self.digest(password, self.pepper_version), self.pepper_version

    async def verify(self, password: str, stored_hash: str, pepper_version: str) -> PasswordCheck:
        self._record("verify", password)
        valid = hmac.compare_digest(stored_hash, self.digest(password, pepper_version))
        return PasswordCheck(valid=valid, needs_rehash=valid and pepper_version != self.pepper_version)

    async def burn(self, password: str) -> None:
        self._record("burn", password)


class FakeTokenIssuer:
    """Opaque random tokens mapped to their claims; times floored to seconds like JWT claims."""

    def __init__(self, clock: FakeClock, ttl_seconds: int = 900) -> None:
        self.clock = clock
        self.ttl_seconds = ttl_seconds
        self.issued: dict[str, AccessClaims] = {}

    def issue(self, sub: UUID, sid: UUID, org: UUID, prole: str, auth_time: datetime) -> IssuedToken:
        now = self.clock.now()
        if auth_time > now:
            raise ValueError("auth_time is in the future")
        iat = now.replace(microsecond=0)
        token = f"access-{secrets.token_urlsafe(16)}"
        claims = AccessClaims(
            sub=sub,
            sid=sid,
            org=org,
            prole=prole,
            auth_time=auth_time.replace(microsecond=0),
            iat=iat,
            exp=iat + timedelta(seconds=self.ttl_seconds),
            jti=token,
        )
        self.issued[token] = claims
        return IssuedToken(token=token, expires_in=self.ttl_seconds, claims=claims)

    def verify(self, token: str) -> AccessClaims:
        claims = self.issued.get(token)
        if claims is None or self.clock.now() >= claims.exp:
            raise InvalidToken()
        return claims

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": []}


class FakeRateLimiter:
    """Exact sliding-window counts on the fake clock; `refuse(prefix)` forces refusals."""

    def __init__(self, clock: FakeClock, trace: list[str]) -> None:
        self.clock = clock
        self.trace = trace
        self.admitted: dict[str, list[datetime]] = defaultdict(list)
        self.keys: list[str] = []
        self.refused_prefixes: set[str] = set()

    def refuse(self, prefix: str) -> None:
        self.refused_prefixes.add(prefix)

    def allow_all(self) -> None:
        self.refused_prefixes.clear()

    async def hit_many(self, checks: Sequence[tuple[str, RateLimit]]) -> list[LimitDecision]:
        if len({key for key, _ in checks}) != len(checks):
            raise ValueError("hit_many needs distinct keys")  # as the real limiters
        return [await self.hit(key, limit) for key, limit in checks]

    async def hit(self, key: str, limit: RateLimit) -> LimitDecision:
        self.keys.append(key)
        self.trace.append(f"limiter.hit:{key}")
        if any(key.startswith(prefix) for prefix in self.refused_prefixes):
            return LimitDecision(allowed=False, remaining=0, retry_after=float(limit.window_seconds))
        now = self.clock.now()
        window = [t for t in self.admitted[key] if (now - t).total_seconds() < limit.window_seconds]
        self.admitted[key] = window
        if len(window) >= limit.limit:
            wait = limit.window_seconds - (now - window[0]).total_seconds()
            return LimitDecision(allowed=False, remaining=0, retry_after=wait)
        window.append(now)
        return LimitDecision(allowed=True, remaining=limit.limit - len(window), retry_after=0.0)

    async def reset(self, key: str) -> None:
        self.admitted.pop(key, None)


class RevocationStoreDown(ConnectionError):
    pass


class FakeRevocationStore:
    """Keeps the latest instant per entry, like the real state; `up = False` makes it report
    unhealthy and fail every call, as a store that lost Redis does."""

    def __init__(self) -> None:
        self.up = True
        self.sessions: dict[UUID, datetime] = {}
        self.users: dict[UUID, datetime] = {}
        self.orgs: dict[UUID, datetime] = {}

    def _check(self) -> None:
        if not self.up:
            raise RevocationStoreDown("revocation store is down")

    @staticmethod
    def _keep_latest(table: dict[UUID, datetime], key: UUID, instant: datetime) -> None:
        if key not in table or instant > table[key]:
            table[key] = instant

    async def revoke_session(self, session_id: UUID, expires_at: datetime) -> None:
        self._check()
        self._keep_latest(self.sessions, session_id, expires_at)

    async def set_user_not_before(self, user_id: UUID, instant: datetime) -> None:
        self._check()
        self._keep_latest(self.users, user_id, instant)

    async def set_org_not_before(self, org_id: UUID, instant: datetime) -> None:
        self._check()
        self._keep_latest(self.orgs, org_id, instant)

    async def is_revoked(self, session_id: UUID, user_id: UUID, org_id: UUID, issued_at: datetime) -> bool:
        self._check()
        if session_id in self.sessions:
            return True
        user_nb, org_nb = self.users.get(user_id), self.orgs.get(org_id)
        return (user_nb is not None and issued_at < user_nb) or (org_nb is not None and issued_at < org_nb)

    async def healthy(self) -> bool:
        return self.up

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class FakeMailer:
    def __init__(self) -> None:
        self.outbox: list[MailMessage] = []
        self.fail = False

    async def send(self, message: MailMessage) -> None:
        if self.fail:
            raise ConnectionError("SMTP server unreachable")
        self.outbox.append(message)

    def to(self, address: str) -> list[MailMessage]:
        return [message for message in self.outbox if message.to == address]


class FakeSecretBox:
    """Reversible but context-bound: the envelope is only a random handle to (context, plaintext)."""

    _PREFIX = b"fakebox1:"

    def __init__(self) -> None:
        self.sealed: dict[bytes, tuple[SecretContext, bytes]] = {}

    async def seal(self, plaintext: bytes, context: SecretContext) -> bytes:
        handle = secrets.token_bytes(16)
        self.sealed[handle] = (context, bytes(plaintext))
        return self._PREFIX + handle.hex().encode()

    async def open(self, envelope: bytes, context: SecretContext) -> bytes:
        if not envelope.startswith(self._PREFIX):
            raise SecretBoxError("not an envelope of this box")
        try:
            handle = bytes.fromhex(envelope[len(self._PREFIX) :].decode())
        except ValueError:
            raise SecretBoxError("tampered envelope") from None
        entry = self.sealed.get(handle)
        if entry is None or entry[0] != context:
            raise SecretBoxError("envelope is bound elsewhere or unknown")
        return entry[1]


class FakeTotp:
    """Deterministic codes that depend on the secret and the 30 s step (`code_for`); the
    matching rules (±1 step, after_step, latest match wins, code shape) follow the port."""

    @staticmethod
    def step_at(at: datetime) -> int:
        return int(at.timestamp()) // TOTP_PERIOD_SECONDS

    @staticmethod
    def code_for(secret: str, step: int) -> str:
        digest = hashlib.sha256(f"{secret}|{step}".encode()).digest()
        return f"{int.from_bytes(digest[:4], 'big') % 1_000_000:06d}"

    def code_at(self, secret: str, at: datetime, steps_ahead: int = 0) -> str:
        return self.code_for(secret, self.step_at(at) + steps_ahead)

    def new_secret(self) -> str:
        return base64.b32encode(secrets.token_bytes(20)).decode()

    def provisioning_uri(self, secret: str, account: str, issuer: str) -> str:
        if not issuer or not account or ":" in issuer or ":" in account:
            raise ValueError("issuer and account must be non-empty and free of ':'")
        label = f"{quote(issuer)}:{quote(account)}"
        return (
            f"otpauth://totp/{label}?secret={secret}&issuer={quote(issuer)}"
            f"&algorithm=SHA1&digits=6&period={TOTP_PERIOD_SECONDS}"
        )

    def matching_step(self, secret: str, code: str, at: datetime, *, after_step: int | None) -> int | None:
        candidate = code.strip()
        if candidate.count(" ") == 1 and len(candidate) == 7 and candidate[3] == " ":
            candidate = candidate.replace(" ", "")
        if len(candidate) != 6 or not (candidate.isascii() and candidate.isdigit()):
            return None
        current = self.step_at(at)
        found = None
        for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
            matches = hmac.compare_digest(self.code_for(secret, step), candidate)
            if matches and (after_step is None or step > after_step):
                found = step
        return found


class FakeQrRenderer:
    def __init__(self) -> None:
        self.rendered: list[str] = []

    def svg(self, data: str) -> str:
        self.rendered.append(data)
        escaped = data.replace("&", "&amp;").replace("<", "&lt;")
        return f'<svg xmlns="http://www.w3.org/2000/svg"><desc>{escaped}</desc></svg>'


COMMON_PASSWORDS = frozenset({"correct horse battery staple", "passwordpassword123", "qwertyuiopasdfghjkl"})


def is_common_password(folded: str) -> bool:
    return folded in COMMON_PASSWORDS


# -- assembly ----------------------------------------------------------------------------------


@dataclass
class Fakes:
    """A fake deployment: the deps the use cases get, and each fake with its concrete type."""

    deps: IdentityDeps
    db: InMemoryDatabase
    uow: FakeUnitOfWorkFactory
    clock: FakeClock
    hasher: FakePasswordHasher
    tokens: FakeTokenIssuer
    limiter: FakeRateLimiter
    revocations: FakeRevocationStore
    mailer: FakeMailer
    totp: FakeTotp
    qr: FakeQrRenderer
    secret_box: FakeSecretBox
    trace: list[str] = field(default_factory=list)


def make_fakes(**policy_overrides: Any) -> Fakes:
    clock = FakeClock()
    trace: list[str] = []
    db = InMemoryDatabase(clock.now)
    uow = FakeUnitOfWorkFactory(db)
    hasher = FakePasswordHasher(trace)
    tokens = FakeTokenIssuer(clock)
    limiter = FakeRateLimiter(clock, trace)
    revocations = FakeRevocationStore()
    mailer = FakeMailer()
    totp = FakeTotp()
    qr = FakeQrRenderer()
    secret_box = FakeSecretBox()
    deps = IdentityDeps(
        uow=uow,
        hasher=hasher,
        tokens=tokens,
        limiter=limiter,
        revocations=revocations,
        mailer=mailer,
        clock=clock,
        policy=IdentityPolicy(**{"frontend_url": "https://app.bulwark.test", **policy_overrides}),
        is_common_password=is_common_password,
        totp=totp,
        qr=qr,
        secret_box=secret_box,
        refresh_successor_key=secrets.token_bytes(32),
        recovery_code_key=secrets.token_bytes(32),
    )
    return Fakes(
        deps, db, uow, clock, hasher, tokens, limiter, revocations, mailer, totp, qr, secret_box, trace
    )


def make_deps(**policy_overrides: Any) -> IdentityDeps:
    return make_fakes(**policy_overrides).deps


def seed_user(
    fakes: Fakes,
    email: str = "dana@example.com",
    password: str = "a long enough pass phrase",  # noqa: S107 - a test account
    *,
    verified: bool = True,
    display_name: str = "Dana",
) -> User:
    """A committed user with a personal organisation they administer (what RegisterUser makes)."""
    now = fakes.clock.now()
    org = Organisation(id=uuid.uuid4(), name=f"{display_name}'s organisation", created_at=now, personal=True)
    user = User(
        id=uuid.uuid4(),
        email=email,
        display_name=display_name,
        password_hash=fakes.hasher.digest(password, fakes.hasher.pepper_version),
        pepper_version=fakes.hasher.pepper_version,
        created_at=now,
        email_verified_at=now if verified else None,
        default_org_id=org.id,
    )
    fakes.db.put(ORGS, org.id, org)
    fakes.db.put(USERS, user.id, user)
    fakes.db.put(MEMBERSHIPS, (org.id, user.id), Membership(org.id, user.id, OrgRole.ADMINISTRATOR, now))
    fakes.db.put(
        MEMBER_ROLES,
        (org.id, user.id, ADMINISTRATOR_ROLE_ID),
        MemberRoleRow(org.id, user.id, ADMINISTRATOR_ROLE_ID, now),
    )
    return user


def mutate(fakes: Fakes, table: str, key: Hashable, change: Callable[[Any], None]) -> None:
    """Change a committed row in place (test set-up, e.g. suspend a user, disable an org)."""
    row = fakes.db.get(table, key)
    assert row is not None, f"no {table} row {key!r}"
    change(row)
    fakes.db.put(table, key, row)


def live_sessions(fakes: Fakes, user_id: UUID) -> list[Session]:
    now = fakes.clock.now()
    return [s for s in fakes.db.rows(SESSIONS) if s.user_id == user_id and s.is_live(now)]


def all_of(rows: Iterable[T], **equal: object) -> list[T]:
    return [row for row in rows if all(getattr(row, name) == value for name, value in equal.items())]


# -- flows the tests share -----------------------------------------------------------------------


async def login(fakes: Fakes, email: str, password: str, ctx: RequestContext | None = None) -> LoginResult:
    """A password login that must end in a session (not a 2FA challenge)."""
    result = await Login(fakes.deps)(email, password, ctx or RequestContext(ip="203.0.113.7"))
    assert isinstance(result, LoginResult), f"expected a session, got {result!r}"
    return result


async def principal_of(fakes: Fakes, access_token: str) -> Principal:
    return await AuthenticateBearer(fakes.deps)(access_token)
