"""The address lifecycle as pure rules: each transition, its refusal from the wrong state, and
its idempotence (a retry after a crash is a no-op, never a second move)."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from domain import egress
from domain.egress import SYSTEM, EgressAddress, EgressState, EgressTransitionRefused

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
USER = uuid.uuid4()
COOLDOWN = timedelta(days=7)


def _address(state: EgressState, user: uuid.UUID | None = None, **extra: object) -> EgressAddress:
    return EgressAddress("203.0.113.5", "ref", state, NOW, user, **extra)  # type: ignore[arg-type]


def test_allocate_binds_an_available_address_to_one_user() -> None:
    move = egress.allocate(_address(EgressState.AVAILABLE), USER, NOW, SYSTEM, "paying plan")
    assert move is not None
    assert (move.from_state, move.to_state, move.after.user_id) == (
        EgressState.AVAILABLE,
        EgressState.ALLOCATED,
        USER,
    )
    assert move.after.live and (move.actor, move.reason) == (SYSTEM, "paying plan")


def test_allocate_again_to_the_same_user_is_a_no_op_and_to_another_is_refused() -> None:
    held = _address(EgressState.ALLOCATED, USER)
    assert egress.allocate(held, USER, NOW, SYSTEM, "retry") is None
    with pytest.raises(EgressTransitionRefused):
        egress.allocate(held, uuid.uuid4(), NOW, SYSTEM, "steal")


@pytest.mark.parametrize("state", [EgressState.DRAINING, EgressState.COOLING, EgressState.RELEASED])
def test_an_address_in_teardown_or_released_cannot_be_allocated(state: EgressState) -> None:
    user = None if state is EgressState.RELEASED else USER
    with pytest.raises(EgressTransitionRefused):
        egress.allocate(_address(state, user), USER, NOW, SYSTEM, "re-upgrade")


def test_teardown_starts_from_allocated_and_keeps_the_last_holder() -> None:
    move = egress.start_teardown(_address(EgressState.ALLOCATED, USER), NOW, SYSTEM, "closed")
    assert move is not None and move.to_state is EgressState.DRAINING and move.after.user_id == USER
    assert not move.after.live
    for state in (EgressState.DRAINING, EgressState.COOLING, EgressState.RELEASED):
        assert egress.start_teardown(_address(state, USER), NOW, SYSTEM, "again") is None
    with pytest.raises(EgressTransitionRefused):
        egress.start_teardown(_address(EgressState.AVAILABLE), NOW, SYSTEM, "nothing held")


def test_detached_moves_draining_to_cooling_until_the_cooldown_ends() -> None:
    move = egress.detached(_address(EgressState.DRAINING, USER), NOW, COOLDOWN)
    assert move is not None and move.to_state is EgressState.COOLING
    assert move.after.cool_until == NOW + COOLDOWN
    assert egress.detached(move.after, NOW, COOLDOWN) is None
    with pytest.raises(EgressTransitionRefused):
        egress.detached(_address(EgressState.ALLOCATED, USER), NOW, COOLDOWN)


def test_cooling_returns_to_the_pool_only_after_the_cooldown() -> None:
    cooling = _address(EgressState.COOLING, USER, cool_until=NOW + COOLDOWN)
    with pytest.raises(EgressTransitionRefused):
        egress.cooled(cooling, NOW + COOLDOWN - timedelta(seconds=1))
    move = egress.cooled(cooling, NOW + COOLDOWN)
    assert move is not None and move.to_state is EgressState.AVAILABLE and move.after.user_id is None
    assert egress.cooled(move.after, NOW + COOLDOWN) is None
    with pytest.raises(EgressTransitionRefused):
        egress.cooled(_address(EgressState.DRAINING, USER), NOW + COOLDOWN)


def test_release_from_cooling_only_after_the_cooldown() -> None:
    cooling = _address(EgressState.COOLING, USER, cool_until=NOW + COOLDOWN)
    with pytest.raises(EgressTransitionRefused):
        egress.released(cooling, NOW)
    move = egress.released(cooling, NOW + COOLDOWN)
    assert move is not None and move.to_state is EgressState.RELEASED and move.after.user_id is None
    assert egress.released(move.after, NOW + COOLDOWN) is None
    with pytest.raises(EgressTransitionRefused):
        egress.released(_address(EgressState.ALLOCATED, USER), NOW + COOLDOWN)
    with pytest.raises(EgressTransitionRefused):
        egress.released(_address(EgressState.AVAILABLE), NOW + COOLDOWN)


def test_a_growing_providers_address_is_released_straight_from_draining() -> None:
    # The job asks only after the gateway confirmed the detach and the provider the delete; an
    # address given back leaves our pool, so no later holder of ours inherits it.
    move = egress.released(_address(EgressState.DRAINING, USER), NOW)
    assert move is not None and move.from_state is EgressState.DRAINING
    assert move.to_state is EgressState.RELEASED and move.after.user_id is None


def test_a_released_address_the_provider_hands_out_again_comes_back_through_the_pool() -> None:
    move = egress.acquired(_address(EgressState.RELEASED), "new-ref", NOW)
    assert (
        move is not None and move.to_state is EgressState.AVAILABLE and move.after.provider_ref == "new-ref"
    )
    assert egress.acquired(_address(EgressState.AVAILABLE), "x", NOW) is None


def test_every_state_change_follows_the_lifecycle_table() -> None:
    assert egress.ALLOWED[EgressState.AVAILABLE] == {EgressState.ALLOCATED}
    assert egress.ALLOWED[EgressState.ALLOCATED] == {EgressState.DRAINING}
    assert egress.ALLOWED[EgressState.DRAINING] == {EgressState.COOLING, EgressState.RELEASED}
    assert egress.ALLOWED[EgressState.COOLING] == {EgressState.AVAILABLE, EgressState.RELEASED}


def test_downgrade_grace_starts_once_and_a_re_upgrade_inside_keeps_the_address() -> None:
    held = _address(EgressState.ALLOCATED, USER)
    graced = egress.start_grace(held, NOW, timedelta(days=7))
    assert graced is not None and graced.grace_until == NOW + timedelta(days=7)
    # A second downgrade does not push the end out.
    assert egress.start_grace(graced, NOW + timedelta(days=3), timedelta(days=7)) is None
    assert not egress.grace_over(graced, NOW + timedelta(days=7) - timedelta(seconds=1))
    assert egress.grace_over(graced, NOW + timedelta(days=7))
    kept = egress.end_grace(graced)
    assert kept is not None and kept.grace_until is None and kept.address == held.address
    assert egress.end_grace(kept) is None


def test_a_teardown_is_stuck_when_it_has_not_moved_past_the_threshold() -> None:
    threshold = timedelta(hours=1)
    draining = _address(EgressState.DRAINING, USER)
    assert not egress.stuck(draining, NOW + threshold, threshold)
    assert egress.stuck(draining, NOW + threshold + timedelta(seconds=1), threshold)
    cooling = _address(EgressState.COOLING, USER, cool_until=NOW + COOLDOWN)
    assert not egress.stuck(cooling, NOW + COOLDOWN, threshold)
    assert egress.stuck(cooling, NOW + COOLDOWN + threshold + timedelta(seconds=1), threshold)
    assert not egress.stuck(_address(EgressState.ALLOCATED, USER), NOW + COOLDOWN * 9, threshold)


def test_the_provider_label_names_the_attempt_not_the_user() -> None:
    attempt = uuid.uuid4()
    assert egress.allocation_label(attempt) == egress.allocation_label(attempt)
    assert egress.allocation_label(attempt) != egress.allocation_label(uuid.uuid4())
