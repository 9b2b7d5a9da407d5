"""Managing MT5 bridges from the public API: create one (its key shown once), list, rename,
revoke, and rotate its key with an overlap so the EA can be updated."""

import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta

from application.authorization import PermissionResolver, same_org
from application.bridge_keys import BridgeKeys, key_hash
from application.errors import InvalidInput, NotFound
from application.identity import RequestContext
from application.org_authority import authorize
from application.ports.clock import Clock
from application.ports.unit_of_work import UnitOfWorkFactory
from application.step_up import require_recent_auth
from application.text_input import validated_text
from application.use_cases.sessions import Principal
from domain.bridges import (
    COMMAND_KINDS,
    NAME_MAX,
    SECRET_BYTES,
    Bridge,
    BridgeCommand,
    BridgeStatus,
    key_prefix,
    make_key,
)
from domain.text_rules import has_control_characters


@dataclass(frozen=True)
class BridgePolicy:
    key_overlap: timedelta = timedelta(minutes=10)
    offline_after: timedelta = timedelta(seconds=90)
    stepup_window: timedelta = timedelta(minutes=10)
    command_ttl: timedelta = timedelta(seconds=60)


@dataclass
class BridgePorts:
    uow: UnitOfWorkFactory
    resolver: PermissionResolver
    clock: Clock
    keys: BridgeKeys
    policy: BridgePolicy


@dataclass(frozen=True)
class IssuedKey:
    bridge: Bridge
    key: str  # shown once, never stored


def _new_key(bridge_id: uuid.UUID) -> str:
    return make_key(bridge_id, secrets.token_bytes(SECRET_BYTES))


def _hidden(bridge: Bridge) -> Bridge:
    return replace(bridge, key_hash="", previous_key_hash=None)


@dataclass
class CreateBridge:
    ports: BridgePorts

    async def __call__(
        self,
        principal: Principal,
        org_id: uuid.UUID,
        name: str,
        broker_connection: str | None,
        ctx: RequestContext,
    ) -> IssuedKey:
        name = validated_text(name, "name", "The name", NAME_MAX)
        label = (
            validated_text(broker_connection, "broker_connection", "The label", NAME_MAX)
            if broker_connection
            else None
        )
        bridge_id = uuid.uuid4()
        key = _new_key(bridge_id)
        bridge = Bridge(
            id=bridge_id,
            org_id=org_id,
            name=name,
            created_by=principal.user_id,
            created_at=self.ports.clock.now(),
            key_hash=key_hash(self.ports.keys.secret_key, key),
            key_prefix=key_prefix(key),
            broker_connection=label,
        )
        async with self.ports.uow() as uow:
            await authorize(uow, principal, org_id, "bridges:create")
            await uow.bridges.add(bridge)
            await uow.audit.append(
                ctx.event(
                    "bridge.created",
                    actor=principal.user_id,
                    org=org_id,
                    target_type="bridge",
                    target_id=bridge_id,
                    name=name,
                    key_prefix=bridge.key_prefix,
                )
            )
            await uow.commit()
        return IssuedKey(_hidden(bridge), key)


@dataclass
class ListBridges:
    ports: BridgePorts

    async def __call__(self, principal: Principal, org_id: uuid.UUID) -> list[Bridge]:
        same_org(principal, org_id)
        await self.ports.resolver.require(principal, "bridges:read")
        async with self.ports.uow() as uow:
            return [_hidden(b) for b in await uow.bridges.in_org(org_id)]


@dataclass
class GetBridge:
    ports: BridgePorts

    async def __call__(self, principal: Principal, org_id: uuid.UUID, bridge_id: uuid.UUID) -> Bridge:
        same_org(principal, org_id)
        await self.ports.resolver.require(principal, "bridges:read")
        async with self.ports.uow() as uow:
            bridge = await uow.bridges.get(org_id, bridge_id)
        if bridge is None:
            raise NotFound("No such bridge.")
        return _hidden(bridge)


@dataclass
class RenameBridge:
    ports: BridgePorts

    async def __call__(
        self, principal: Principal, org_id: uuid.UUID, bridge_id: uuid.UUID, name: str, ctx: RequestContext
    ) -> Bridge:
        name = validated_text(name, "name", "The name", NAME_MAX)
        async with self.ports.uow() as uow:
            await authorize(uow, principal, org_id, "bridges:update")
            bridge = await uow.bridges.rename(org_id, bridge_id, name, self.ports.clock.now())
            if bridge is None:
                raise NotFound("No such bridge.")
            await uow.audit.append(
                ctx.event(
                    "bridge.renamed",
                    actor=principal.user_id,
                    org=org_id,
                    target_type="bridge",
                    target_id=bridge_id,
                )
            )
            await uow.commit()
        await self.ports.keys.changed(bridge_id, bridge.version)
        return _hidden(bridge)


@dataclass
class RevokeBridge:
    """Takes effect on the bridge's very next request, on every worker."""

    ports: BridgePorts

    async def __call__(
        self, principal: Principal, org_id: uuid.UUID, bridge_id: uuid.UUID, ctx: RequestContext
    ) -> None:
        async with self.ports.uow() as uow:
            await authorize(uow, principal, org_id, "bridges:delete")
            bridge = await uow.bridges.set_status(
                org_id, bridge_id, BridgeStatus.REVOKED, self.ports.clock.now()
            )
            if bridge is None:
                raise NotFound("No such bridge.")
            await uow.audit.append(
                ctx.event(
                    "bridge.revoked",
                    actor=principal.user_id,
                    org=org_id,
                    target_type="bridge",
                    target_id=bridge_id,
                )
            )
            await uow.commit()
        await self.ports.keys.changed(bridge_id, bridge.version)


@dataclass
class RotateBridgeKey:
    """A new key, shown once; the old one keeps working for the overlap, then dies. A suspended
    bridge (its key was in a second terminal) is resumed by a rotation, and its old key, known
    to whoever copied it, dies at once."""

    ports: BridgePorts

    async def __call__(
        self, principal: Principal, org_id: uuid.UUID, bridge_id: uuid.UUID, ctx: RequestContext
    ) -> IssuedKey:
        now = self.ports.clock.now()
        require_recent_auth(principal.auth_time, now, self.ports.policy.stepup_window)
        key = _new_key(bridge_id)
        until = now + self.ports.policy.key_overlap
        async with self.ports.uow() as uow:
            await authorize(uow, principal, org_id, "bridges:update")
            current = await uow.bridges.get(org_id, bridge_id)
            suspended = current is not None and current.status is BridgeStatus.SUSPENDED
            if suspended:
                until = now  # no overlap for a key a second terminal holds
            bridge = await uow.bridges.rotate_key(
                org_id, bridge_id, key_hash(self.ports.keys.secret_key, key), key_prefix(key), until
            )
            if bridge is None:
                raise NotFound("No such bridge.")
            if suspended:
                back = BridgeStatus.OFFLINE if bridge.account is not None else BridgeStatus.PENDING
                bridge = (
                    await uow.bridges.set_status(
                        org_id, bridge_id, back, now, only_from=(BridgeStatus.SUSPENDED,)
                    )
                    or bridge
                )
            await uow.audit.append(
                ctx.event(
                    "bridge.key_rotated",
                    actor=principal.user_id,
                    org=org_id,
                    target_type="bridge",
                    target_id=bridge_id,
                    key_prefix=bridge.key_prefix,
                    previous_valid_until=until.isoformat(),
                    resumed=suspended,
                )
            )
            await uow.commit()
        await self.ports.keys.changed(bridge_id, bridge.version)
        return IssuedKey(_hidden(bridge), key)


@dataclass
class QueueBridgeCommand:
    """`bridges:execute`: a command the bridge picks up on its next poll, or never after expiry."""

    ports: BridgePorts

    async def __call__(
        self,
        principal: Principal,
        org_id: uuid.UUID,
        bridge_id: uuid.UUID,
        kind: str,
        payload: dict[str, object],
        ctx: RequestContext,
    ) -> BridgeCommand:
        now = self.ports.clock.now()
        async with self.ports.uow() as uow:
            await authorize(uow, principal, org_id, "bridges:execute")
            bridge = await uow.bridges.get(org_id, bridge_id)
            if bridge is None or not bridge.usable:
                raise NotFound("No such bridge.")
            if kind not in COMMAND_KINDS:
                raise InvalidInput(f"kind must be one of {', '.join(sorted(COMMAND_KINDS))}.", field="kind")
            # What reaches an EA is plain text: no control characters, bounded (by the DTO too).
            if len(payload) > 10 or any(
                not isinstance(v, str) or has_control_characters(k) or has_control_characters(v)
                for k, v in payload.items()
            ):
                raise InvalidInput("payload takes up to 10 plain-text values.", field="payload")
            command = await uow.bridge_reports.queue_command(
                BridgeCommand(
                    id=uuid.uuid4(),
                    org_id=org_id,
                    bridge_id=bridge_id,
                    kind=kind,
                    payload=payload,
                    created_by=principal.user_id,
                    created_at=now,
                    expires_at=now + self.ports.policy.command_ttl,
                )
            )
            await uow.audit.append(
                ctx.event(
                    "bridge.command_queued",
                    actor=principal.user_id,
                    org=org_id,
                    target_type="bridge",
                    target_id=bridge_id,
                    kind=kind,
                    command_id=command.id,
                )
            )
            await uow.commit()
        return command
