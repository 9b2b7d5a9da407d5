"""A request that runs too long answers 503 instead of hanging the client."""

import asyncio
import logging

from entrypoints.http.asgi_responses import send_problem
from entrypoints.http.asgi_types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("bulwark.http")


class TimeoutMiddleware:
    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            async with asyncio.timeout(self.seconds):
                await self.app(scope, receive, tracking_send)
        except TimeoutError:
            log.warning("request timed out after %.1fs: %s %s", self.seconds, scope["method"], scope["path"])
            if not started:
                await send_problem(
                    send,
                    503,
                    "request_timeout",
                    "The request took too long and was abandoned.",
                    headers=[(b"retry-after", b"1")],
                )
