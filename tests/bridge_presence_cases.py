"""One table of bridge-call sequences and the verdict each call must get, run against the pure
rule (`domain.bridge_presence.observe`) and against both `BridgePresence` adapters (the Lua one in
Redis and the in-process one): the two adapters must agree with the rule, call for call.

Times are seconds after `T0` (a whole second, so every microsecond count is exact); a call's
expected `previous_ip` is the address of the call before it."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from domain.bridge_presence import SecondTerminal, figure_of

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
INTERVAL = timedelta(seconds=30)

A, B = "203.0.113.10", "198.51.100.20"
BAL_1, BAL_2, BAL_3 = figure_of(1_000.0), figure_of(1_250.5), figure_of(980.25)


@dataclass(frozen=True)
class Call:
    ip: str
    at: float  # the service's clock, seconds after T0
    sent: float | None = None  # the terminal's clock in a heartbeat, seconds after T0
    figure: str | None = None
    flag: SecondTerminal | None = None  # expected

    @property
    def at_time(self) -> datetime:
        return T0 + timedelta(seconds=self.at)

    @property
    def sent_time(self) -> datetime | None:
        return None if self.sent is None else T0 + timedelta(seconds=self.sent)

    @property
    def sent_ms(self) -> int | None:
        return None if self.sent is None else round((T0.timestamp() + self.sent) * 1000)

    @property
    def at_us(self) -> int:
        return round((T0.timestamp() + self.at) * 1_000_000)


SECOND = SecondTerminal.SECOND_ADDRESS
CLOCK = SecondTerminal.INTERLEAVED_CLOCK
FIGURES = SecondTerminal.INTERLEAVED_FIGURES

CASES: dict[str, list[Call]] = {
    "same address again and again": [Call(A, 0), Call(A, 1), Call(A, 2), Call(A, 40)],
    "second address within the interval": [Call(A, 0), Call(B, 10, flag=SECOND)],
    "second address just inside the interval": [Call(A, 0), Call(B, 29.999, flag=SECOND)],
    "second address exactly one interval later": [Call(A, 0), Call(B, 30)],
    "second address after the interval": [Call(A, 0), Call(B, 31)],
    "back and forth between two addresses": [
        Call(A, 0),
        Call(B, 5, flag=SECOND),
        Call(A, 10, flag=SECOND),
        Call(A, 15),
    ],
    "terminal clock back more than a second": [
        Call(A, 0, sent=100),
        Call(A, 30, sent=98.999, flag=CLOCK),
    ],
    "terminal clock back exactly the tolerance": [Call(A, 0, sent=100), Call(A, 30, sent=99)],
    "a resent heartbeat (same terminal clock)": [Call(A, 0, sent=100), Call(A, 1, sent=100)],
    "terminal clock forward": [Call(A, 0, sent=100), Call(A, 30, sent=130), Call(A, 60, sent=160)],
    "the terminal clock is kept across calls without one": [
        Call(A, 0, sent=100),
        Call(A, 10),
        Call(A, 20, sent=95, flag=CLOCK),
    ],
    "a second address outranks a clock going back": [
        Call(A, 0, sent=100),
        Call(B, 5, sent=50, flag=SECOND),
    ],
    "balances A, B, A, B": [
        Call(A, 0, figure=BAL_1),
        Call(A, 30, figure=BAL_2),
        Call(A, 60, figure=BAL_1),
        Call(A, 90, figure=BAL_2, flag=FIGURES),
    ],
    "balances keep flipping": [
        Call(A, 0, figure=BAL_1),
        Call(A, 30, figure=BAL_2),
        Call(A, 60, figure=BAL_1),
        Call(A, 90, figure=BAL_2, flag=FIGURES),
        Call(A, 120, figure=BAL_1, flag=FIGURES),
    ],
    "balances A, B, A, then C": [
        Call(A, 0, figure=BAL_1),
        Call(A, 30, figure=BAL_2),
        Call(A, 60, figure=BAL_1),
        Call(A, 90, figure=BAL_3),
    ],
    "balances A, A, A": [
        Call(A, 0, figure=BAL_1),
        Call(A, 30, figure=BAL_1),
        Call(A, 60, figure=BAL_1),
    ],
    "balances A, B, A, A, B": [
        Call(A, 0, figure=BAL_1),
        Call(A, 30, figure=BAL_2),
        Call(A, 60, figure=BAL_1),
        Call(A, 90, figure=BAL_1),
        Call(A, 120, figure=BAL_2),
    ],
    "calls without a balance do not break the flips": [
        Call(A, 0, figure=BAL_1),
        Call(A, 30, figure=BAL_2),
        Call(A, 40),
        Call(A, 60, figure=BAL_1),
        Call(A, 70),
        Call(A, 90, figure=BAL_2, flag=FIGURES),
    ],
    "-0.0 and 0.0 are one balance": [
        Call(A, 0, figure=figure_of(0.0)),
        Call(A, 30, figure=figure_of(5.0)),
        Call(A, 60, figure=figure_of(-0.0)),
        Call(A, 90, figure=figure_of(5.0), flag=FIGURES),
    ],
    "a second address outranks interleaved figures": [
        Call(A, 0, figure=BAL_1),
        Call(A, 30, figure=BAL_2),
        Call(A, 60, figure=BAL_1),
        Call(B, 70, figure=BAL_2, flag=SECOND),
    ],
}
