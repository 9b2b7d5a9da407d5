"""Opaque keyset-pagination cursors: the sort key of a page's last row, so the next page starts
strictly after it (stable while rows are added or removed, unlike an offset). Anything that does
not decode to the expected shape is refused as bad input."""

import base64
import binascii
import json
import uuid
from datetime import datetime

from application.errors import InvalidInput
from domain.text_rules import has_control_characters

MAX_LIMIT = 200
_MAX_CURSOR = 1024


class InvalidCursor(InvalidInput):
    code = "invalid_cursor"


def checked_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"`limit` is 1 to {MAX_LIMIT}.", code="invalid_limit", field="limit")
    return limit


def encode(first: str, row_id: uuid.UUID) -> str:
    raw = json.dumps([first, str(row_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(cursor: str) -> tuple[str, uuid.UUID]:
    refused = InvalidCursor("Unknown cursor: pass back `next_cursor` unchanged.", field="cursor")
    if len(cursor) > _MAX_CURSOR or not cursor.isascii():
        raise refused
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        first, row_id = json.loads(raw)
        if not isinstance(first, str) or not isinstance(row_id, str) or has_control_characters(first):
            raise ValueError  # a forged cursor: a NUL in it would reach the database
        return first, uuid.UUID(row_id)
    except (ValueError, TypeError, binascii.Error):
        raise refused from None


def decode_text(cursor: str) -> tuple[str, uuid.UUID]:
    return _decode(cursor)


def decode_instant(cursor: str) -> tuple[datetime, uuid.UUID]:
    first, row_id = _decode(cursor)
    try:
        instant = datetime.fromisoformat(first)
    except ValueError:
        raise InvalidCursor("Unknown cursor: pass back `next_cursor` unchanged.", field="cursor") from None
    if instant.tzinfo is None:
        raise InvalidCursor("Unknown cursor: pass back `next_cursor` unchanged.", field="cursor")
    return instant, row_id
