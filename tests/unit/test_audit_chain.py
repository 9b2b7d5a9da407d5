"""The pure hash-chain functions: what makes tampering with the audit log visible."""

import dataclasses
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.audit import (
    GENESIS_HASH,
    ActorKind,
    AuditEvent,
    AuditRecord,
    ChainVerifier,
    canonical_payload,
    canonical_payload_around_id,
    chain_hash,
    first_broken_link,
    normalise_details,
    normalise_time,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def build_chain(count: int) -> list[AuditRecord]:
    records: list[AuditRecord] = []
    prev = GENESIS_HASH
    for seq in range(1, count + 1):
        event = AuditEvent(
            action=f"test.action{seq}",
            actor_kind=ActorKind.USER,
            actor_user_id=UUID(int=seq),
            details={"n": seq},
        )
        at = T0 + timedelta(seconds=seq)
        digest = chain_hash(prev, seq, at, event)
        records.append(AuditRecord(seq, at, event, prev, digest))
        prev = digest
    return records


def test_intact_chain_has_no_broken_link() -> None:
    assert first_broken_link(build_chain(5)) is None


def test_empty_chain_has_no_broken_link() -> None:
    assert first_broken_link([]) is None


def test_first_broken_link_accepts_any_iterable() -> None:
    chain = build_chain(3)
    assert first_broken_link(iter(chain)) is None
    tampered = [chain[0], dataclasses.replace(chain[1], prev_hash="f" * 64), chain[2]]
    assert first_broken_link(record for record in tampered) == 2


def test_changed_details_break_the_link_at_that_record() -> None:
    chain = build_chain(5)
    chain[2] = dataclasses.replace(chain[2], event=dataclasses.replace(chain[2].event, details={"n": 99}))
    assert first_broken_link(chain) == 3


def test_changed_action_breaks_the_link_at_that_record() -> None:
    chain = build_chain(5)
    chain[3] = dataclasses.replace(chain[3], event=dataclasses.replace(chain[3].event, action="x"))
    assert first_broken_link(chain) == 4


def test_changed_time_breaks_the_link() -> None:
    chain = build_chain(3)
    chain[0] = dataclasses.replace(chain[0], occurred_at=chain[0].occurred_at + timedelta(microseconds=1))
    assert first_broken_link(chain) == 1


def test_every_event_field_is_covered_by_the_hash() -> None:
    base = AuditEvent(action="a")
    variants: dict[str, Any] = {
        "action": "b",
        "actor_kind": ActorKind.ADMIN,
        "actor_user_id": uuid4(),
        "org_id": uuid4(),
        "target_type": "t",
        "target_id": "1",
        "source_ip": "192.0.2.1",
        "user_agent": "ua",
        "request_id": "r",
        "details": {"k": "v"},
    }
    assert set(variants) == {f.name for f in dataclasses.fields(AuditEvent)}
    original = chain_hash(GENESIS_HASH, 1, T0, base)
    for name, value in variants.items():
        assert chain_hash(GENESIS_HASH, 1, T0, dataclasses.replace(base, **{name: value})) != original, name


def test_sequence_number_and_previous_hash_are_covered_by_the_hash() -> None:
    event = AuditEvent(action="a")
    original = chain_hash(GENESIS_HASH, 1, T0, event)
    assert chain_hash(GENESIS_HASH, 2, T0, event) != original
    assert chain_hash("1" * 64, 1, T0, event) != original


def test_deleted_middle_record_breaks_the_link_at_its_successor() -> None:
    chain = build_chain(5)
    del chain[2]
    assert first_broken_link(chain) == 4


def test_rehashed_record_after_a_deletion_is_caught_at_the_next_link() -> None:
    # Ids may have gaps (an id a rolled-back transaction took stays unused), so an attacker who
    # deletes entry 3 and re-chains entry 4 onto entry 2 is caught by entry 5, which still names
    # the old entry 4's hash (and, in the database, by entry 3's link that stays sealed).
    chain = build_chain(5)
    forged_prev = chain[1].hash
    assert forged_prev is not None
    forged = dataclasses.replace(
        chain[3],
        prev_hash=forged_prev,
        hash=chain_hash(forged_prev, 4, chain[3].occurred_at, chain[3].event),
    )
    verifier = ChainVerifier()
    assert all(verifier.feed(r) for r in [*chain[:2], forged])
    assert verifier.feed(chain[4]) is False
    assert verifier.broken_at == 5
    assert verifier.reason is not None and "prev_hash" in verifier.reason


def test_an_entry_without_a_link_or_out_of_order_is_a_broken_link() -> None:
    chain = build_chain(3)
    unsealed = dataclasses.replace(chain[1], prev_hash=None, hash=None)
    assert first_broken_link([chain[0], unsealed, chain[2]]) == 2
    assert first_broken_link([chain[0], chain[1], chain[1], chain[2]]) == 2
    verifier = ChainVerifier()
    assert verifier.feed(chain[0])
    assert verifier.pass_over(2, str(chain[1].prev_hash), str(chain[1].hash))
    assert verifier.feed(chain[2])
    assert verifier.pass_over(4, "f" * 64, "0" * 64) is False and verifier.broken_at == 4


def test_removed_first_record_is_detected() -> None:
    assert first_broken_link(build_chain(3)[1:]) == 2


def test_hash_swapped_between_records_is_detected() -> None:
    chain = build_chain(3)
    chain[1] = dataclasses.replace(chain[1], hash=chain[2].hash)
    assert first_broken_link(chain) == 2


def test_verification_can_resume_from_a_known_entry() -> None:
    chain = build_chain(6)
    assert first_broken_link(chain[3:], prev_hash=chain[2].hash, prev_id=3) is None
    assert first_broken_link(chain[3:], prev_hash=GENESIS_HASH, prev_id=3) == 4


def test_verifier_counts_checked_records_and_stops_at_the_first_break() -> None:
    chain = build_chain(5)
    chain[1] = dataclasses.replace(chain[1], hash="0" * 64)
    verifier = ChainVerifier()
    results = [verifier.feed(r) for r in chain]
    assert results == [True, False, False, False, False]
    assert verifier.checked == 2
    assert verifier.broken_at == 2
    assert not verifier.ok


def test_verifier_on_intact_chain_tracks_the_tail() -> None:
    chain = build_chain(4)
    verifier = ChainVerifier()
    assert all(verifier.feed(r) for r in chain)
    assert verifier.ok and verifier.checked == 4
    assert (verifier.last_id, verifier.last_hash) == (4, chain[-1].hash)


def test_canonical_payload_ignores_details_key_order() -> None:
    a = AuditEvent(action="a", details={"x": 1, "y": 2})
    b = AuditEvent(action="a", details={"y": 2, "x": 1})
    assert canonical_payload(1, T0, a) == canonical_payload(1, T0, b)


def test_normalised_details_equal_their_json_round_trip() -> None:
    user = uuid4()
    details: dict[Any, Any] = {"user": user, 5: "int key", "tuple": (1, 2), "at": T0, "nested": {"u": [user]}}
    assert normalise_details(details) == {
        "user": str(user),
        "5": "int key",
        "tuple": [1, 2],
        "at": T0.isoformat(),
        "nested": {"u": [str(user)]},
    }


@pytest.mark.parametrize(
    "bad", [{"s": {1, 2}}, {"o": object()}, {"b": b"bytes"}, {"f": math.nan}, {"f": math.inf}]
)
def test_details_that_would_not_round_trip_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        normalise_details(bad)


def test_normalised_time_is_utc_and_renders_the_same_from_any_zone() -> None:
    local = T0.astimezone(timezone(timedelta(hours=2)))
    assert normalise_time(local) == T0
    assert normalise_time(local).isoformat() == T0.isoformat()
    assert normalise_time(local).tzinfo is UTC


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        normalise_time(datetime(2026, 1, 1))


# An entry whose every field is set, with "id" inside its details and its user agent.
AWKWARD = AuditEvent(
    action="login.success",
    actor_kind=ActorKind.USER,
    actor_user_id=UUID(int=7),
    org_id=UUID(int=9),
    target_type="session",
    target_id="s-1",
    source_ip="203.0.113.5",
    user_agent='Mozilla "id":1 \u00fcn\u00ef \u2603',
    request_id="r1",
    details={"reason": "x", "id": 5, "nested": {"id": "y"}},
)


def test_chain_hash_is_pinned() -> None:
    # Computed by the code that wrote the chains in use: any drift in the rendering would make
    # every stored entry look tampered with.
    expected = "f6cd5083a8d071cffb365f4989d90afb4827d8bbd8642edbd3d3e165f03a6f42"
    assert chain_hash(GENESIS_HASH, 123456789, T0, AWKWARD) == expected


@pytest.mark.parametrize("seq", [1, 9, 10, 123456789, 2**63 - 1])
@pytest.mark.parametrize(
    "event",
    [
        AWKWARD,
        AuditEvent(action="x"),
        AuditEvent(action='a"id":2,', target_id='"id":3', details={"id": None, "": [1, {"id": 4}]}),
    ],
)
def test_payload_around_the_id_rebuilds_the_payload_for_any_id(seq: int, event: AuditEvent) -> None:
    # The PostgreSQL store hashes before + id + after in SQL, with the id it assigns.
    before, after = canonical_payload_around_id(T0, event)
    assert before + str(seq).encode() + after == canonical_payload(seq, T0, event)
