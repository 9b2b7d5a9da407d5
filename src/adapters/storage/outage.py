"""Telling a database outage (a restart, a failover, a server gone) from a refused statement.

An outage is answered as `DependencyUnavailable` (a 503 with Retry-After at the edge) rather
than as a driver error that would surface as a 500; a refused statement (a constraint, a type
error) stays what it is."""

from application.errors import DependencyUnavailable

# SQLSTATE classes of a server that is gone or going: 08 connection exception, 57P operator
# intervention (admin shutdown, crash shutdown, cannot connect now: starting up / shutting down).
_OUTAGE_SQLSTATES = ("08", "57P")
# asyncpg's InterfaceError for a connection that died under it carries no SQLSTATE.
_LOST_CONNECTION_TEXT = ("connection is closed", "connection was closed", "underlying connection is closed")
RETRY_AFTER_SECONDS = 2.0


def is_outage(error: BaseException | None) -> bool:
    """True if `error`, or anything it was raised from, says the server cannot be reached."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError | TimeoutError):  # refused, reset, connect timeout
            return True
        sqlstate = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_OUTAGE_SQLSTATES):
            return True
        if type(error).__name__ in ("InterfaceError", "ConnectionDoesNotExistError") and any(
            text in str(error) for text in _LOST_CONNECTION_TEXT
        ):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def database_unavailable() -> DependencyUnavailable:
    return DependencyUnavailable(
        "The database is unavailable; try again shortly.", retry_after=RETRY_AFTER_SECONDS
    )
