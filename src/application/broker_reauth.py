"""A broker connection whose tokens the broker no longer honours turns `needs_reauth` at once:
audited, and its owner is mailed to connect it again. Shared by every path that learns it (a
refused or lost refresh, a worker reporting CH_ACCESS_TOKEN_INVALID)."""

import logging
from uuid import UUID

from application.identity import RequestContext
from application.ports.clock import Clock
from application.ports.mailer import Mailer, MailMessage
from application.ports.unit_of_work import UnitOfWorkFactory
from domain.audit import ActorKind

log = logging.getLogger("bulwark.brokers")


async def needs_reauth(
    uow_factory: UnitOfWorkFactory,
    mailer: Mailer,
    clock: Clock,
    frontend_url: str,
    *,
    org_id: UUID,
    connection_id: UUID,
    reason: str,
    ctx: RequestContext,
    actor_kind: ActorKind = ActorKind.SYSTEM,
) -> bool:
    """True when this call made the change (it was active)."""
    async with uow_factory() as uow:
        changed = await uow.broker_connections.mark_needs_reauth(org_id, connection_id, clock.now())
        connection = await uow.broker_connections.get(org_id, connection_id)
        owner = await uow.users.get(connection.created_by) if connection is not None else None
        if changed:
            await uow.audit.append(
                ctx.event(
                    "broker_connection.needs_reauth",
                    org=org_id,
                    actor_kind=actor_kind,
                    target_type="broker_connection",
                    target_id=connection_id,
                    reason=reason,
                )
            )
        await uow.commit()
    if changed and owner is not None and connection is not None:
        link = f"{frontend_url.rstrip('/')}/broker-connections"
        message = MailMessage(
            to=owner.email,
            subject="Reconnect your cTrader account",
            body=(
                f"Hello {owner.display_name},\n\ncTrader no longer accepts our access to your "
                f'connection "{connection.label}", so trading through it has stopped. If you did '
                f"not revoke it yourself, check your cTrader account.\n\nConnect it again: {link}\n"
            ),
        )
        try:
            await mailer.send(message)
        except Exception:
            log.exception("could not mail the owner of broker connection %s", connection_id)
    return changed
