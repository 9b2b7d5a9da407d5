"""Handing a request on after reading some of its body: the read messages are replayed first."""

from collections import deque

from entrypoints.http.asgi_types import Message, Receive


def replay(seen: list[Message], receive: Receive) -> Receive:
    pending = deque(seen)

    async def replaying_receive() -> Message:
        return pending.popleft() if pending else await receive()

    return replaying_receive
