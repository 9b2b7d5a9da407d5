"""Service clients: created and managed by operators on the CLI, exchanging their secret for a
short-lived vault token (OAuth 2.0 client credentials, RFC 6749 section 4.4)."""

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from application.errors import InvalidInput, NotAuthenticated, NotFound, RateLimited
from application.identity import RequestContext
from application.ports.clock import Clock
from application.ports.integration_secret_repository import DuplicateName
from application.ports.rate_limiter import RateLimit, RateLimiter
from application.ports.service_tokens import IssuedServiceToken, ServiceTokenIssuer
from application.ports.unit_of_work import UnitOfWorkFactory
from application.text_input import validated_text
from domain.audit import ActorKind
from domain.service_clients import SERVICE_SCOPES, ServiceClient

NAME_MAX = 100


class InvalidClient(NotAuthenticated):
    """Client authentication failed (RFC 6749's invalid_client)."""

    code = "invalid_client"


class InvalidScope(InvalidInput):
    """The requested scope is not the client's (RFC 6749's invalid_scope)."""

    code = "invalid_scope"


@dataclass
class ServiceClientPorts:
    uow: UnitOfWorkFactory
    clock: Clock
    tokens: ServiceTokenIssuer
    limiter: RateLimiter
    secret_key: bytes = field(repr=False)
    rotation_overlap: timedelta = timedelta(hours=1)
    # Workers ask about once per token lifetime; a secret-guessing loop hits this first.
    requests_per_ip: RateLimit = field(default_factory=lambda: RateLimit(120, 60))


def secret_hash(key: bytes, client_id: uuid.UUID, secret: str) -> str:
    """A 256-bit random secret needs no slow hash; the key keeps a stolen table useless."""
    return hmac.new(key, f"{client_id}|{secret}".encode(), hashlib.sha256).hexdigest()


def parse_scopes(text: str | None) -> frozenset[str] | None:
    if text is None or not text.strip():
        return None
    scopes = frozenset(text.split())
    unknown = scopes - SERVICE_SCOPES
    if unknown:
        raise InvalidScope(f"Unknown scope: {', '.join(sorted(unknown))}.", field="scope")
    return scopes


@dataclass(frozen=True)
class CreatedServiceClient:
    client: ServiceClient
    secret: str


@dataclass
class CreateServiceClient:
    ports: ServiceClientPorts

    async def __call__(self, name: str, scopes: list[str]) -> CreatedServiceClient:
        name = validated_text(name, "name", "The name", NAME_MAX)
        wanted = parse_scopes(" ".join(scopes))
        if not wanted:
            raise InvalidScope("Give at least one scope.", field="scope")
        client_id, secret = uuid.uuid4(), secrets.token_urlsafe(32)
        client = ServiceClient(
            id=client_id,
            name=name,
            scopes=wanted,
            secret_hash=secret_hash(self.ports.secret_key, client_id, secret),
            created_at=self.ports.clock.now(),
        )
        async with self.ports.uow() as uow:
            try:
                await uow.service_clients.add(client)
            except DuplicateName:
                raise InvalidInput(f"A service client named {name!r} exists.", code="name_taken") from None
            await uow.audit.append(
                RequestContext(ip="cli").event(
                    "service_client.created",
                    actor_kind=ActorKind.SYSTEM,
                    target_type="service_client",
                    target_id=client_id,
                    name=name,
                    scopes=sorted(wanted),
                )
            )
            await uow.commit()
        return CreatedServiceClient(client, secret)


@dataclass
class ListServiceClients:
    ports: ServiceClientPorts

    async def __call__(self) -> list[ServiceClient]:
        async with self.ports.uow() as uow:
            return await uow.service_clients.all()


async def _by_name(ports: ServiceClientPorts, name: str) -> ServiceClient:
    async with ports.uow() as uow:
        client = await uow.service_clients.get_by_name(name)
    if client is None:
        raise NotFound(f"No service client named {name!r}.")
    return client


@dataclass
class DisableServiceClient:
    """Takes effect on the client's next vault request: every access re-reads the client."""

    ports: ServiceClientPorts

    async def __call__(self, name: str) -> ServiceClient:
        client = await _by_name(self.ports, name)
        async with self.ports.uow() as uow:
            await uow.service_clients.disable(client.id, self.ports.clock.now())
            await uow.audit.append(
                RequestContext(ip="cli").event(
                    "service_client.disabled",
                    actor_kind=ActorKind.SYSTEM,
                    target_type="service_client",
                    target_id=client.id,
                )
            )
            await uow.commit()
        return client


@dataclass
class RotateServiceClientSecret:
    """A new secret; the old one keeps working for the overlap, so workers can be updated."""

    ports: ServiceClientPorts

    async def __call__(self, name: str) -> CreatedServiceClient:
        client = await _by_name(self.ports, name)
        secret = secrets.token_urlsafe(32)
        until = self.ports.clock.now() + self.ports.rotation_overlap
        async with self.ports.uow() as uow:
            await uow.service_clients.rotate_secret(
                client.id, secret_hash(self.ports.secret_key, client.id, secret), until
            )
            await uow.audit.append(
                RequestContext(ip="cli").event(
                    "service_client.secret_rotated",
                    actor_kind=ActorKind.SYSTEM,
                    target_type="service_client",
                    target_id=client.id,
                    previous_valid_until=until.isoformat(),
                )
            )
            await uow.commit()
        return CreatedServiceClient(client, secret)


@dataclass
class IssueServiceToken:
    ports: ServiceClientPorts

    async def __call__(
        self, client_id: str, client_secret: str, scope: str | None, ctx: RequestContext
    ) -> tuple[IssuedServiceToken, frozenset[str]]:
        decision = await self.ports.limiter.hit(f"vault-token-ip:{ctx.ip}", self.ports.requests_per_ip)
        if not decision.allowed:
            raise RateLimited(decision.retry_after)
        try:
            parsed_id = uuid.UUID(client_id)
        except ValueError:
            raise InvalidClient() from None
        requested = parse_scopes(scope)
        now = self.ports.clock.now()
        async with self.ports.uow() as uow:
            client = await uow.service_clients.get(parsed_id)
        presented = secret_hash(self.ports.secret_key, parsed_id, client_secret)
        accepted = (
            client is not None
            and not client.is_disabled
            and any(hmac.compare_digest(presented, known) for known in client.accepted_hashes(now))
        )
        if not accepted or client is None:
            raise InvalidClient()
        granted = client.granted(requested)
        if granted is None:
            raise InvalidScope("The client may not ask for that scope.", field="scope")
        return self.ports.tokens.issue(client.id, granted), granted
