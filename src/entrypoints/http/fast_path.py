"""The one shape of every fast path: a lean way to a hot route, raw ASGI, just inside the HTTP
ground-rule middleware (which still applies).

A fast path picks the requests it is sure about (`pick`: exact path and method, no root_path,
single plain headers; anything odd is None), reads the body when its route takes one (bounded
by the route's limit), and runs the route's own decision (`decide`), writing only the 200 answer
itself. Everything else is the Litestar route's to answer, as it answers everyone:

- `pick` said None, the body is too large or incomplete, or `decide` raised `Declined`: the
  request goes to the route untouched (the body replayed), nothing having happened yet;
- `decide` failed after its decision ran (it changes state: a refresh, a heartbeat): it must not
  run twice, so the failure travels in the scope and the route raises it first thing
  (`raise_precomputed_failure`), answering it as every error is answered, CORS included;
- `decide` failed and the path is not `effectful` (reading is harmless to repeat): the route
  runs the call again.

A guard, hook or middleware added to the Litestar app or to a fast-pathed route does NOT run
here: `tests/e2e/test_fast_path_guards.py` pins each route's guards and middleware so that
adding one fails until its fast path follows (or is dropped)."""

from abc import ABC, abstractmethod
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from entrypoints.composition import Container
from entrypoints.http.asgi_replay import replay
from entrypoints.http.asgi_types import ASGIApp, Message, Receive, Scope, Send

# Where a fast path leaves a failure for its route to raise (in the ASGI scope).
FAILURE_KEY = "bulwark.fast_path_failure"


class Declined(Exception):
    """The route should answer this request; nothing has happened yet."""


@dataclass(frozen=True)
class Answer:
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)  # beyond type and length


def precomputed_failure(scope: MutableMapping[str, Any]) -> BaseException | None:
    """The failure of a call a fast path already ran for this request, if any."""
    failure: BaseException | None = scope.get(FAILURE_KEY)
    return failure


def raise_precomputed_failure(scope: MutableMapping[str, Any]) -> None:
    failure = precomputed_failure(scope)
    if failure is not None:
        raise failure


class FastPath(ABC):
    effectful = False  # whether `decide` changes state (then it must never run twice)
    reads_body = False

    def __init__(self, app: ASGIApp, container: Container, max_body_bytes: int = 0) -> None:
        self.app = app
        self.container = container
        self.max_body_bytes = max_body_bytes

    @abstractmethod
    def pick(self, scope: Scope) -> Any | None:
        """What `decide` needs from the request's head, or None when the route should answer."""

    @abstractmethod
    async def decide(self, scope: Scope, picked: Any, body: bytes) -> Answer:
        """The route's decision and its 200 answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        picked = self.pick(scope)
        if picked is None:
            await self.app(scope, receive, send)
            return
        body = b""
        if self.reads_body:
            body, read, complete = await self._read_body(receive)
            if not complete:
                await self.app(scope, replay(read, receive), send)
                return
            receive = replay(read, receive)  # the route gets the body again if it answers
        try:
            answer = await self.decide(scope, picked, body)
        except Declined:
            await self.app(scope, receive, send)
            return
        except Exception as failure:
            if self.effectful:
                scope[FAILURE_KEY] = failure
            await self.app(scope, receive, send)
            return
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(answer.body)),
            *answer.headers,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body, "more_body": False})

    async def _read_body(self, receive: Receive) -> tuple[bytes, list[Message], bool]:
        """(body, the messages to replay, whether all of it came within the limit)."""
        chunks: list[bytes] = []
        size = 0
        more = True
        other: Message | None = None  # a disconnect (or anything else) that ended the reading
        while more and size <= self.max_body_bytes:
            message = await receive()
            if message["type"] != "http.request":
                other = message
                break
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more = bool(message.get("more_body"))
        body = b"".join(chunks)
        # What was read goes on as one message (however many chunks it came in), then the rest.
        read: list[Message] = [{"type": "http.request", "body": body, "more_body": more}]
        if other is not None:
            read.append(other)
        complete = not more and other is None and size <= self.max_body_bytes
        return body, read, complete
