"""Audit events and the hash chain that makes tampering visible."""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
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
    """An event as stored: with its sequence number, time and chain hashes."""

    id: int
    occurred_at: datetime
    event: AuditEvent
    prev_hash: str
    hash: str


def canonical_payload(seq: int, occurred_at: datetime, event: AuditEvent) -> bytes:
    """A byte-exact, order-independent rendering of everything an entry says."""
    body = {
        "id": seq,
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
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def chain_hash(prev_hash: str, seq: int, occurred_at: datetime, event: AuditEvent) -> str:
    return hashlib.sha256(
        prev_hash.encode() + canonical_payload(seq, occurred_at, event)
    ).hexdigest()


def first_broken_link(records: "list[AuditRecord]", prev_hash: str = GENESIS_HASH) -> int | None:
    """The id of the first record whose hash does not follow from its predecessor, or None."""
    for record in records:
        expected = chain_hash(prev_hash, record.id, record.occurred_at, record.event)
        if record.prev_hash != prev_hash or record.hash != expected:
            return record.id
        prev_hash = record.hash
    return None
