"""Who a live admin session speaks for: what every admin-panel use case is handed (and checks it
was handed), shared so that those use cases need not import the login's."""

import uuid
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class AdminPrincipal:
    user_id: uuid.UUID
    session_id: uuid.UUID
    email: str
    display_name: str
    auth_time: datetime
    expires_at: datetime  # the session's absolute end
