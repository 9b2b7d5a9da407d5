"""Keyset pages of audit entries, newest first: the org view's and the platform view's shared
cursor and page rules."""

from dataclasses import dataclass

from application.errors import InvalidInput
from domain.audit import AuditRecord

MAX_PAGE = 200


@dataclass(frozen=True)
class AuditPage:
    records: list[AuditRecord]
    next_cursor: str | None


def checked_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit is 1 to {MAX_PAGE}.", field="limit")
    return limit


def before_id_of(cursor: str | None) -> int | None:
    """The id a page continues below. An audit id is a 63-bit integer: anything else (a 23-digit
    number, "²") is no cursor."""
    if not cursor:
        return None
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):
        raise InvalidInput("Unknown cursor.", field="cursor")
    return int(cursor)


def page_of(records: list[AuditRecord], limit: int) -> AuditPage:
    """`records` as fetched with `limit + 1`: the extra one only says a next page exists."""
    more = len(records) > limit
    records = records[:limit]
    return AuditPage(records, str(records[-1].id) if more and records else None)
