"""One key, one terminal: what a bridge's calls tell about how many terminals use its key.

Every admitted call leaves the bridge's presence (address, when, and for heartbeats the
terminal's own clock and balance). A call betrays a second terminal when it comes from another
address within one heartbeat interval, when the terminal clock it reports goes back (two clocks
interleaved), or when the balance keeps flipping between two values (two accounts' figures
interleaved: A, B, A, B). The Redis adapter runs this same rule in Lua; both are tested
against one table of cases."""

from dataclasses import dataclass
from enum import StrEnum

# A resent heartbeat carries the same `sent_at`; a terminal's clock may step back a little (NTP).
CLOCK_TOLERANCE_MS = 1_000
# A, B, A is a flip; one flip may be a deposit undone, two in a row (A, B, A, B) are two accounts.
FLIPS_TO_FLAG = 2


class SecondTerminal(StrEnum):
    SECOND_ADDRESS = "second_address"
    INTERLEAVED_CLOCK = "interleaved_clock"
    INTERLEAVED_FIGURES = "interleaved_figures"


@dataclass(frozen=True)
class Presence:
    ip: str
    seen_us: int  # the service's clock, microseconds since the epoch
    sent_ms: int | None = None  # the terminal's clock in its last heartbeat
    figure: str | None = None  # the balance in its last heartbeat, as text
    previous_figure: str | None = None
    flips: int = 0


def observe(
    state: Presence | None,
    ip: str,
    now_us: int,
    interval_us: int,
    sent_ms: int | None = None,
    figure: str | None = None,
) -> tuple[Presence, SecondTerminal | None]:
    """The presence after this call, and the second terminal it betrays, if any."""
    flag: SecondTerminal | None = None
    if state is not None and state.ip != ip and now_us - state.seen_us < interval_us:
        flag = SecondTerminal.SECOND_ADDRESS
    elif (
        state is not None
        and sent_ms is not None
        and state.sent_ms is not None
        and sent_ms < state.sent_ms - CLOCK_TOLERANCE_MS
    ):
        flag = SecondTerminal.INTERLEAVED_CLOCK
    last, previous, flips = (state.figure, state.previous_figure, state.flips) if state else (None, None, 0)
    if figure is not None:
        flipped = last is not None and previous is not None and figure == previous and figure != last
        flips = flips + 1 if flipped else 0
        previous, last = last, figure
        if flag is None and flips >= FLIPS_TO_FLAG:
            flag = SecondTerminal.INTERLEAVED_FIGURES
    kept_sent = sent_ms if sent_ms is not None else (state.sent_ms if state else None)
    return Presence(ip, now_us, kept_sent, last, previous, flips), flag


def figure_of(balance: float) -> str:
    """The balance as the rule compares it (-0.0 and 0.0 are one figure)."""
    return repr(float(balance) + 0.0)
