"""`bulwark egress squid-helper`'s side of Squid's helper protocol (basic scheme, concurrency
channel-IDs), through real pipes: out-of-order answers, URL-escaped fields, and failures that
must deny (ERR/BH), never admit."""

import asyncio
import os
from urllib.parse import quote

from application.use_cases.egress_admission import EgressAdmitted, EgressRefused
from domain.egress_credentials import EgressRefusal
from entrypoints.egress_helper import answer_line, serve


async def admit(username: str, password: str) -> EgressAdmitted | EgressRefused:
    if password == "slow":
        await asyncio.sleep(0.2)
    if password == "boom":
        raise RuntimeError("ledger down")
    if username == "u@127.0.0.5" and password in ("good", "slow", "a b+c%/="):
        return EgressAdmitted("127.0.0.5")
    return EgressRefused(EgressRefusal.FORGED)


async def test_answers_name_the_channel_and_the_address_as_a_note() -> None:
    assert await answer_line(admit, b"7 u@127.0.0.5 good\n") == b"7 OK egress_address=127.0.0.5\n"
    assert await answer_line(admit, b"8 u@127.0.0.5 bad\n") == b"8 ERR message=forged\n"
    escaped = f"9 {quote('u@127.0.0.5')} {quote('a b+c%/=')}\n".encode()
    assert await answer_line(admit, escaped) == b"9 OK egress_address=127.0.0.5\n"


async def test_malformed_lines_and_failures_deny() -> None:
    assert await answer_line(admit, b"3 only-a-username\n") == b"3 ERR message=malformed\n"
    assert await answer_line(admit, b"3 a b c\n") == b"3 ERR message=malformed\n"
    assert await answer_line(admit, b"u@127.0.0.5 good\n") == b"BH message=expected-a-channel-ID\n"
    assert await answer_line(admit, b"4 u@127.0.0.5 boom\n") == b"4 BH message=lookup-failed\n"


async def test_through_pipes_answers_leave_as_they_are_decided_and_stdin_closing_ends_it() -> None:
    to_helper_r, to_helper_w = os.pipe()
    from_helper_r, from_helper_w = os.pipe()
    with (
        os.fdopen(to_helper_r, "rb", buffering=0) as stdin,
        os.fdopen(from_helper_w, "wb") as stdout,
        os.fdopen(to_helper_w, "wb", buffering=0) as feed,
        os.fdopen(from_helper_r, "rb") as answers,
    ):
        helper = asyncio.create_task(serve(admit, stdin, stdout))
        feed.write(b"0 u@127.0.0.5 slow\n1 u@127.0.0.5 good\n\n2 u@127.0.0.5 bad\n")
        loop = asyncio.get_running_loop()
        first = await asyncio.wait_for(loop.run_in_executor(None, answers.readline), 5)
        second = await asyncio.wait_for(loop.run_in_executor(None, answers.readline), 5)
        assert {first, second} == {b"1 OK egress_address=127.0.0.5\n", b"2 ERR message=forged\n"}
        third = await asyncio.wait_for(loop.run_in_executor(None, answers.readline), 5)
        assert third == b"0 OK egress_address=127.0.0.5\n"  # the slow one, last
        feed.close()
        await asyncio.wait_for(helper, 5)
