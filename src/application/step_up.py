"""Step-up: dangerous actions need a recent full authentication (POST /api/v1/auth/reauth)."""

from datetime import datetime, timedelta

from application.errors import NotAuthenticated
from domain.mfa import is_recent


class ReauthRequired(NotAuthenticated):
    """This action needs a recent password (and code) confirmation: POST /api/v1/auth/reauth."""

    code = "reauth_required"


def require_recent_auth(auth_time: datetime | None, now: datetime, window: timedelta) -> None:
    if auth_time is None or not is_recent(auth_time, now, window.total_seconds()):
        raise ReauthRequired()
