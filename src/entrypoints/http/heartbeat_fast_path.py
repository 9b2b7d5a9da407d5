"""POST /api/bridge/v1/heartbeat: a lean way to the call every bridge makes every 30 s.

Six-figure bridge counts send more heartbeats than users send anything else, and for this call
the framework's routing, parameter resolution and response building cost more than the decision
(a key checked from memory, one Redis step, a mark for the next batch). `HeartbeatFastPath`
runs the route's use case (`container.bridges.heartbeat`) for a plain EA request -- exactly one
`X-API-Key`, no `Origin` (a browser's request gets the framework's CORS), a plain Host, a
Content-Length within the limit, a body the route's own strict decoder accepts -- and writes the
200 answer the route writes. A body the decoder refuses goes to the route untouched (it answers
400); a heartbeat that fails has counted already, so its failure goes to the route to raise (see
`fast_path.py`). Tests hold the answers to a reference app without the fast path."""

import msgspec

from entrypoints.dto.bridges import BridgeAnswer, HeartbeatRequest
from entrypoints.http.api_key import api_key_in
from entrypoints.http.asgi_types import Scope
from entrypoints.http.fast_path import Answer, Declined, FastPath
from entrypoints.http.plain_host import is_plain_post, single_headers
from entrypoints.http.request_context import context_of_scope

PATH = "/api/bridge/v1/heartbeat"

_DECODER = msgspec.json.Decoder(HeartbeatRequest, strict=True)  # as the route's `strict_body`
_ENCODER = msgspec.json.Encoder()
_ONCE = frozenset({b"origin", b"content-length"})


def _candidate(scope: Scope, max_body_bytes: int) -> str | None:
    """The bridge key of a plain EA heartbeat, or None when the framework should answer."""
    if not is_plain_post(scope, PATH):
        return None
    seen = single_headers(scope, _ONCE)
    if seen is None or b"origin" in seen:
        return None
    length = seen.get(b"content-length")
    if length is None or not length.isdigit() or int(length) > max_body_bytes:
        return None  # the route answers 400, 411 or 413
    return api_key_in(scope["headers"])


class HeartbeatFastPath(FastPath):
    effectful = True  # a heartbeat is counted and marked: never twice
    reads_body = True

    def pick(self, scope: Scope) -> str | None:
        return _candidate(scope, self.max_body_bytes)

    async def decide(self, scope: Scope, picked: str, body: bytes) -> Answer:
        try:
            data = _DECODER.decode(body)
        except msgspec.MsgspecError:
            raise Declined() from None  # nothing happened: the route answers the 400
        bridge = await self.container.bridges.heartbeat(picked, data.heartbeat(), context_of_scope(scope))
        return Answer(_ENCODER.encode(BridgeAnswer(bridge_id=bridge.id, status="online")))
