"""Domain -> DTO for bridges, in one place."""

from datetime import datetime, timedelta

from domain.bridges import Bridge
from entrypoints.dto.bridges import BridgeAccountView, BridgeView


def bridge_view(bridge: Bridge, now: datetime, offline_after: timedelta) -> BridgeView:
    account = bridge.account
    return BridgeView(
        id=bridge.id,
        name=bridge.name,
        broker_connection=bridge.broker_connection,
        status=str(bridge.shown_status(now, offline_after)),
        account=BridgeAccountView(account.login, account.server, account.company) if account else None,
        terminal_build=bridge.terminal_build,
        ea_version=bridge.ea_version,
        last_seen_at=bridge.last_seen_at,
        last_ip=bridge.last_ip,
        key_prefix=bridge.key_prefix,
        created_by=bridge.created_by,
        created_at=bridge.created_at,
    )
