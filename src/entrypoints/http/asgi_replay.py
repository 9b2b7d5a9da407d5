"""Handing a request on after reading some of its body: the read messages are replayed first."""

from entrypoints.http.asgi_types import Message, Receive


def replay(seen: list[Message], receive: Receive) -> Receive:
    pending = list(seen)

    async def replaying_receive() -> Message:
        return pending.pop(0) if pending else await receive()

    return replaying_receive
