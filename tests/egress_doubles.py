"""In-memory stand-ins for the egress provider and gateway, for tests of the ledger's use cases
(the real adapters have their own tests against a real Squid and a Hetzner API simulator).

Each can be told to fail the way the real one may: the gateway not confirming a detach yet or
unreachable; the provider unreachable, out of addresses, or not confirming a release."""

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from uuid import UUID

from application.ports.egress_gateway import EgressGatewayUnavailable, GatewayBinding
from application.ports.egress_provider import (
    EgressProviderExhausted,
    EgressProviderUnavailable,
    ProviderAddress,
)


class InMemoryGateway:
    def __init__(self) -> None:
        self.bound: set[tuple[UUID, str]] = set()
        self.confirm = True
        self.down = False
        self.detached: list[tuple[UUID, str]] = []
        self.cannot_send_from: set[str] = set()

    async def unbindable(self, addresses: Sequence[str]) -> Sequence[str]:
        if self.down:
            raise EgressGatewayUnavailable("squid cache manager unreachable")
        return [a for a in addresses if a in self.cannot_send_from]

    async def bindings(self) -> Sequence[GatewayBinding]:
        if self.down:
            raise EgressGatewayUnavailable("squid cache manager unreachable")
        return [GatewayBinding(user, address) for user, address in sorted(self.bound, key=str)]

    async def detach(self, user_id: UUID, address: str, unbound_at: datetime) -> bool:
        if self.down:
            raise EgressGatewayUnavailable("squid cache manager unreachable")
        self.detached.append((user_id, address))
        if not self.confirm:
            return False
        self.bound.discard((user_id, address))
        return True


class FixedPool:
    """A `static`-like provider: a fixed list, never grows, never releases."""

    name = "static"
    grows = False

    def __init__(self, addresses: list[ProviderAddress]) -> None:
        self.addresses = list(addresses)
        self.down = False

    async def owned(self) -> Sequence[ProviderAddress]:
        if self.down:
            raise EgressProviderUnavailable("down")
        return list(self.addresses)

    async def acquire(self, label: str) -> ProviderAddress:
        raise EgressProviderExhausted("fixed pool")

    async def attach(self, address: ProviderAddress) -> None:
        return None

    async def detach(self, address: ProviderAddress) -> None:
        return None

    async def release(self, address: ProviderAddress) -> bool:
        return False


class GrowingProvider:
    """A cloud-like provider (grows, bills per address), idempotent by label; its state can live
    in a JSON file so that a second process (a crashed job's rerun) sees what the first did."""

    name = "cloud"
    grows = True

    def __init__(self, quota: int, state_file: Path | None = None) -> None:
        self.quota = quota
        self.state_file = state_file
        self.confirm_release = True
        self.down = False
        self._state: dict[str, dict[str, str]] = {}  # address -> {"label", "ref"}
        self._next = 100
        self._load()

    def _load(self) -> None:
        if self.state_file is not None and self.state_file.exists():
            saved = json.loads(self.state_file.read_text())
            self._state, self._next = saved["addresses"], saved["next"]

    def _save(self) -> None:
        if self.state_file is not None:
            self.state_file.write_text(json.dumps({"addresses": self._state, "next": self._next}))

    async def owned(self) -> Sequence[ProviderAddress]:
        self._load()
        return [ProviderAddress(a, v["ref"], {"bulwark": v["label"]}) for a, v in sorted(self._state.items())]

    async def acquire(self, label: str) -> ProviderAddress:
        self._load()
        if self.down:
            raise EgressProviderUnavailable("503 after retries")
        for address, entry in self._state.items():
            if entry["label"] == label:
                return ProviderAddress(address, entry["ref"], {"bulwark": label})  # adopted
        if len(self._state) >= self.quota:
            raise EgressProviderExhausted("quota reached")
        address = f"127.0.0.{self._next}"
        self._next += 1
        self._state[address] = {"label": label, "ref": f"ip-{self._next}"}
        self._save()
        return ProviderAddress(address, self._state[address]["ref"], {"bulwark": label})

    async def attach(self, address: ProviderAddress) -> None:
        return None

    async def detach(self, address: ProviderAddress) -> None:
        if self.down:
            raise EgressProviderUnavailable("503 after retries")

    async def release(self, address: ProviderAddress) -> bool:
        self._load()
        if self.down:
            raise EgressProviderUnavailable("503 after retries")
        if not self.confirm_release:
            return False
        self._state.pop(address.address, None)  # already gone counts as released
        self._save()
        return True
