"""Sending a problem response from raw ASGI middleware (outside Litestar's handlers)."""

from entrypoints.http.asgi_types import Send
from entrypoints.http.problem import PROBLEM_CONTENT_TYPE, encode_problem


async def send_problem(
    send: Send,
    status: int,
    code: str,
    detail: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = encode_problem(status, code, detail)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
