"""Audit events and the hash chain that makes tampering visible."""

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

GENESIS_HASH = "0" * 64


class ActorKind(StrEnum):
    USER = "user"
    ANONYMOUS = "anonymous"
    SYSTEM = "system"
    ADMIN = "admin"
    BRIDGE = "bridge"
    SERVICE = "service"


@dataclass(frozen=True)
class AuditEvent:
    """What happened, by whom, to what. Request context is filled in by the entrypoint."""

    action: str
    actor_kind: ActorKind = ActorKind.ANONYMOUS
    actor_user_id: UUID | None = None
    org_id: UUID | None = None
    target_type: str | None = None
    target_id: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditRecord:
    """An event as stored: with its id, time and chain link. The link (prev_hash, hash) is None
    until the entry is sealed into the chain (PostgreSQL seals after commit; see
    adapters/storage/audit_sealer.py)."""

    id: int
    occurred_at: datetime
    event: AuditEvent
    prev_hash: str | None
    hash: str | None


def canonical_payload(seq: int, occurred_at: datetime, event: AuditEvent) -> bytes:
    """A byte-exact, order-independent rendering of everything an entry says."""
    return _render(_body(occurred_at, event) | {"id": seq}).encode()


def canonical_payload_around_id(occurred_at: datetime, event: AuditEvent) -> tuple[bytes, bytes]:
    """(before, after) with canonical_payload(seq, ...) == before + str(seq).encode() + after for
    every seq: for a store that assigns the id and hashes the entry in one statement. Split by
    structure, never by searching the rendering (a user agent may contain any text)."""
    body = _body(occurred_at, event)
    # Keys render sorted, so the id falls between the keys that sort before it and those after;
    # both groups are fixed and never empty.
    before = _render({k: v for k, v in body.items() if k < "id"})
    after = _render({k: v for k, v in body.items() if k > "id"})
    return (before[:-1] + ',"id":').encode(), ("," + after[1:]).encode()


def _render(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)


def _body(occurred_at: datetime, event: AuditEvent) -> dict[str, Any]:
    return {
        "occurred_at": occurred_at.isoformat(),
        "action": event.action,
        "actor_kind": str(event.actor_kind),
        "actor_user_id": str(event.actor_user_id) if event.actor_user_id else None,
        "org_id": str(event.org_id) if event.org_id else None,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "source_ip": event.source_ip,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "details": event.details,
    }


def chain_hash(prev_hash: str, seq: int, occurred_at: datetime, event: AuditEvent) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical_payload(seq, occurred_at, event)).hexdigest()


def _json_default(value: object) -> str:
    # Only types whose JSON rendering reloads to an equal value; anything else would make the
    # stored entry hash differently from the one that was appended.
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"audit details must be JSON-serialisable, got {type(value).__name__}")


def normalise_details(details: dict[str, Any]) -> dict[str, Any]:
    """`details` exactly as it will read back from a JSON column: UUIDs and datetimes become
    strings, tuples lists, non-string keys strings. Hash this, not the caller's original."""
    if not isinstance(details, dict):
        raise TypeError("audit details must be a dict")
    try:
        rendered = json.dumps(details, default=_json_default, allow_nan=False)
    except ValueError as error:  # NaN / Infinity: no JSON for them, PostgreSQL rejects them
        raise TypeError(f"audit details must be JSON-serialisable: {error}") from error
    result: dict[str, Any] = json.loads(rendered)
    return result


def normalise_time(occurred_at: datetime) -> datetime:
    """UTC with microsecond precision, the form both backends store and return unchanged."""
    if occurred_at.tzinfo is None or occurred_at.utcoffset() is None:
        raise ValueError("audit times must be timezone-aware")
    # Python datetimes never carry more than microseconds; the conversion also fixes the
    # tzinfo object so isoformat() renders "+00:00" whatever zone the clock used.
    return occurred_at.astimezone(UTC)


class ChainVerifier:
    """Checks records one at a time in chain order, so a log of any length is verified in
    constant memory. After the first broken link it stops judging (everything after it is
    unprovable anyway) and remembers that record's id."""

    def __init__(self, prev_hash: str = GENESIS_HASH, prev_id: int = 0) -> None:
        self.last_hash = prev_hash
        self.last_id = prev_id
        self.checked = 0
        self.broken_at: int | None = None
        self.reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at is None

    def feed(self, record: AuditRecord) -> bool:
        """True while every record fed so far links to its predecessor. Ids need not be
        contiguous (an id a rolled-back transaction took is never used), only increasing: a
        deleted entry shows as the next entry's prev_hash naming another hash."""
        if self.broken_at is not None:
            return False
        self.checked += 1
        reason = None
        if record.id <= self.last_id:
            reason = f"id {record.id} does not follow id {self.last_id} (a duplicate or a row out of place)"
        elif record.prev_hash is None or record.hash is None:
            reason = "the entry is not covered by the chain (it has no link)"
        elif record.prev_hash != self.last_hash:
            reason = "prev_hash does not match the previous entry's hash"
        elif record.hash != chain_hash(self.last_hash, record.id, record.occurred_at, record.event):
            reason = "hash does not match the entry's content"
        if reason is not None:
            self.broken_at = record.id
            self.reason = reason
            return False
        self.last_id = record.id
        self.last_hash = str(record.hash)
        return True

    def pass_over(self, entry_id: int, prev_hash: str, digest: str) -> bool:
        """Follows the link of an entry whose row is archived (its partition detached): the link
        must still continue the chain; the entry's content cannot be checked here."""
        if self.broken_at is not None:
            return False
        reason = None
        if entry_id <= self.last_id:
            reason = f"id {entry_id} does not follow id {self.last_id}"
        elif prev_hash != self.last_hash:
            reason = "prev_hash does not match the previous entry's hash"
        if reason is not None:
            self.broken_at = entry_id
            self.reason = reason
            return False
        self.last_id = entry_id
        self.last_hash = digest
        return True

    def fail(self, entry_id: int, reason: str) -> None:
        """Records a broken link found outside the hashes (a sealed entry missing, say)."""
        if self.broken_at is None:
            self.broken_at = entry_id
            self.reason = reason


def first_broken_link(
    records: Iterable[AuditRecord], prev_hash: str = GENESIS_HASH, prev_id: int = 0
) -> int | None:
    """The id of the first record whose hash or id does not follow from its predecessor, or
    None. `prev_hash`/`prev_id` describe the entry before the first one given (genesis: 0)."""
    verifier = ChainVerifier(prev_hash, prev_id)
    for record in records:
        if not verifier.feed(record):
            return verifier.broken_at
    return None
