"""The two-terminals rule alone (`observe`): pure, no adapter."""

import pytest

from domain.bridge_presence import (
    CLOCK_TOLERANCE_MS,
    Presence,
    SecondTerminal,
    figure_of,
    observe,
)
from tests.bridge_presence_cases import CASES, INTERVAL, Call

INTERVAL_US = round(INTERVAL.total_seconds() * 1_000_000)
NOW = 1_772_366_400_000_000  # µs


@pytest.mark.parametrize("calls", CASES.values(), ids=CASES.keys())
def test_the_table_of_call_sequences(calls: list[Call]) -> None:
    state: Presence | None = None
    flags = []
    for call in calls:
        state, flag = observe(state, call.ip, call.at_us, INTERVAL_US, call.sent_ms, call.figure)
        flags.append(flag)
        assert state.ip == call.ip
        assert state.seen_us == call.at_us

    assert flags == [call.flag for call in calls]


def test_a_first_call_is_never_flagged_and_starts_the_presence() -> None:
    presence, flag = observe(None, "10.0.0.1", NOW, INTERVAL_US, 5_000, "12.5")

    assert flag is None
    assert presence == Presence("10.0.0.1", NOW, 5_000, "12.5", None, 0)


def test_a_second_address_within_the_interval() -> None:
    state = Presence("10.0.0.1", NOW)

    _, inside = observe(state, "10.0.0.2", NOW + INTERVAL_US - 1, INTERVAL_US)
    _, at_the_end = observe(state, "10.0.0.2", NOW + INTERVAL_US, INTERVAL_US)
    _, same = observe(state, "10.0.0.1", NOW + 1, INTERVAL_US)

    assert inside is SecondTerminal.SECOND_ADDRESS
    assert at_the_end is None
    assert same is None


def test_the_terminal_clock_may_step_back_by_the_tolerance_but_not_more() -> None:
    state = Presence("10.0.0.1", NOW, sent_ms=1_000_000)

    _, within = observe(state, "10.0.0.1", NOW + 1, INTERVAL_US, 1_000_000 - CLOCK_TOLERANCE_MS)
    _, beyond = observe(state, "10.0.0.1", NOW + 1, INTERVAL_US, 1_000_000 - CLOCK_TOLERANCE_MS - 1)
    _, unknown = observe(Presence("10.0.0.1", NOW), "10.0.0.1", NOW + 1, INTERVAL_US, 1)

    assert within is None
    assert beyond is SecondTerminal.INTERLEAVED_CLOCK
    assert unknown is None  # no earlier terminal clock to compare with


def test_a_call_without_terminal_clock_or_balance_keeps_the_last_ones() -> None:
    state = Presence("10.0.0.1", NOW, sent_ms=7, figure="2.0", previous_figure="1.0", flips=1)

    presence, flag = observe(state, "10.0.0.1", NOW + 5, INTERVAL_US)

    assert flag is None
    assert presence == Presence("10.0.0.1", NOW + 5, 7, "2.0", "1.0", 1)


def test_flips_count_up_on_a_return_to_the_previous_balance_and_reset_otherwise() -> None:
    state = Presence("10.0.0.1", NOW, figure="2.0", previous_figure="1.0", flips=0)

    flipped, flag = observe(state, "10.0.0.1", NOW + 1, INTERVAL_US, figure="1.0")
    assert flag is None
    assert (flipped.figure, flipped.previous_figure, flipped.flips) == ("1.0", "2.0", 1)

    twice, flag = observe(flipped, "10.0.0.1", NOW + 2, INTERVAL_US, figure="2.0")
    assert flag is SecondTerminal.INTERLEAVED_FIGURES
    assert twice.flips == 2

    moved_on, flag = observe(twice, "10.0.0.1", NOW + 3, INTERVAL_US, figure="3.0")
    assert flag is None
    assert (moved_on.figure, moved_on.previous_figure, moved_on.flips) == ("3.0", "2.0", 0)


def test_figures_are_tracked_even_when_another_flag_wins() -> None:
    state = Presence("10.0.0.1", NOW, figure="2.0", previous_figure="1.0", flips=1)

    presence, flag = observe(state, "10.0.0.2", NOW + 1, INTERVAL_US, figure="1.0")

    assert flag is SecondTerminal.SECOND_ADDRESS
    assert presence.flips == 2  # the interleaving is remembered for the next call
    assert presence.ip == "10.0.0.2"


def test_figure_of_makes_signed_zeros_one_figure_and_keeps_others_apart() -> None:
    assert figure_of(-0.0) == figure_of(0.0) == figure_of(0) == "0.0"
    assert figure_of(1_000.5) != figure_of(1_000.25)
    assert figure_of(3) == figure_of(3.0)
