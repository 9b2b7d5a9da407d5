"""A request that runs too long answers 503 instead of hanging the client.

The limit bounds the whole request: at the limit the work is cancelled and the 503 goes out at
once, even if the cancelled work is slow to stop (a driver call stuck in a thread, a lock wait).
The work then gets a short grace to wind down before the request returns; anything it sends
after the limit is dropped."""

import asyncio
import contextlib
import logging

from entrypoints.http.asgi_responses import send_problem
from entrypoints.http.asgi_types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("bulwark.http")

# How long the cancelled work may take to stop once the 503 has gone out.
WIND_DOWN_SECONDS = 1.0

# Cancelled work still winding down past its grace: kept referenced until it ends.
_abandoned: set[asyncio.Task[None]] = set()


def _forget(task: asyncio.Task[None]) -> None:
    _abandoned.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("abandoned request work failed: %r", task.exception())


class TimeoutMiddleware:
    def __init__(self, app: ASGIApp, *, seconds: float, wind_down_seconds: float = WIND_DOWN_SECONDS) -> None:
        self.app = app
        self.seconds = seconds
        self.wind_down_seconds = wind_down_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        timed_out = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if timed_out:
                return  # the client already has its answer
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        work = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        try:
            done, _ = await asyncio.wait({work}, timeout=self.seconds)
        except asyncio.CancelledError:
            work.cancel()
            raise
        if done:
            work.result()  # re-raises the app's own error, if any
            return
        timed_out = True
        work.cancel()
        log.warning("request timed out after %.1fs: %s %s", self.seconds, scope["method"], scope["path"])
        if not started:
            await send_problem(
                send,
                503,
                "request_timeout",
                "The request took too long and was abandoned.",
                headers=[(b"retry-after", b"1")],
            )
        done, _ = await asyncio.wait({work}, timeout=self.wind_down_seconds)
        if done:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                work.result()
            return
        log.warning(
            "request work still running %.1fs after cancellation: %s %s",
            self.wind_down_seconds,
            scope["method"],
            scope["path"],
        )
        _abandoned.add(work)
        work.add_done_callback(_forget)
