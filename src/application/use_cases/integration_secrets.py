"""The other secrets users hand us (API keys of data vendors, webhooks' signing keys): sealed for
the vault exactly like broker tokens, write-only through the public API. They are governed by the
`broker_connections` permissions: the same people connect outside services to the org."""

import uuid
from dataclasses import dataclass

from application.authorization import PermissionResolver, same_org
from application.errors import InvalidInput, NotFound
from application.identity import RequestContext
from application.org_authority import authorize
from application.ports.clock import Clock
from application.ports.credential_sealing import CredentialSealer, integration_secret_context
from application.ports.integration_secret_repository import DuplicateName
from application.ports.unit_of_work import UnitOfWorkFactory
from application.text_input import validated_text
from application.use_cases.sessions import Principal
from domain.brokers import IntegrationSecret

NAME_MAX, KIND_MAX, VALUE_MAX = 100, 60, 8192


@dataclass
class IntegrationSecretPorts:
    uow: UnitOfWorkFactory
    resolver: PermissionResolver
    clock: Clock
    sealer: CredentialSealer | None


@dataclass
class CreateIntegrationSecret:
    ports: IntegrationSecretPorts

    async def __call__(
        self, principal: Principal, org_id: uuid.UUID, name: str, kind: str, value: str, ctx: RequestContext
    ) -> IntegrationSecret:
        if self.ports.sealer is None:
            raise NotFound("The credential vault is not configured.", code="vault_not_configured")
        name = validated_text(name, "name", "The name", NAME_MAX)
        kind = validated_text(kind, "kind", "The kind", KIND_MAX)
        if not value or len(value) > VALUE_MAX:
            raise InvalidInput(f"value must be 1..{VALUE_MAX} characters.", field="value")
        secret_id = uuid.uuid4()
        sealed = self.ports.sealer.seal(value.encode(), integration_secret_context(secret_id, org_id))
        secret = IntegrationSecret(
            id=secret_id,
            org_id=org_id,
            name=name,
            kind=kind,
            created_by=principal.user_id,
            created_at=self.ports.clock.now(),
            sealed=sealed,
        )
        async with self.ports.uow() as uow:
            await authorize(uow, principal, org_id, "broker_connections:create")
            try:
                await uow.integration_secrets.add(secret)
            except DuplicateName:
                raise InvalidInput("A secret of that name exists.", code="name_taken", field="name") from None
            await uow.audit.append(
                ctx.event(
                    "integration_secret.created",
                    actor=principal.user_id,
                    org=org_id,
                    target_type="integration_secret",
                    target_id=secret_id,
                    name=name,
                    kind=kind,
                )
            )
            await uow.commit()
        return IntegrationSecret(secret.id, org_id, name, kind, principal.user_id, secret.created_at)


@dataclass
class ListIntegrationSecrets:
    ports: IntegrationSecretPorts

    async def __call__(self, principal: Principal, org_id: uuid.UUID) -> list[IntegrationSecret]:
        same_org(principal, org_id)
        await self.ports.resolver.require(principal, "broker_connections:read")
        async with self.ports.uow() as uow:
            found = await uow.integration_secrets.in_org(org_id)
        return [IntegrationSecret(s.id, s.org_id, s.name, s.kind, s.created_by, s.created_at) for s in found]


@dataclass
class DeleteIntegrationSecret:
    ports: IntegrationSecretPorts

    async def __call__(
        self, principal: Principal, org_id: uuid.UUID, secret_id: uuid.UUID, ctx: RequestContext
    ) -> None:
        async with self.ports.uow() as uow:
            await authorize(uow, principal, org_id, "broker_connections:delete")
            if not await uow.integration_secrets.delete(org_id, secret_id):
                raise NotFound("No such integration secret.")
            await uow.audit.append(
                ctx.event(
                    "integration_secret.deleted",
                    actor=principal.user_id,
                    org=org_id,
                    target_type="integration_secret",
                    target_id=secret_id,
                )
            )
            await uow.commit()
