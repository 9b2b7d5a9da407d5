"""The `hetzner` egress provider: Hetzner Cloud Primary IPv4s, created on demand in the egress
host's datacenter, assigned to it (attach), unassigned (detach) and deleted (release).

Ours are labelled `managed-by=bulwark` plus `bulwark-egress=<label>` (the label the ledger gives
`acquire`). Idempotency rests on that label: `acquire` looks it up first and adopts what it
finds, so a create whose answer was lost (or a crash before the ledger recorded it) is found on
the next try instead of leaking a paid-for address. The unique name `bulwark-egress-<label>`
is a second guard: a duplicate create is refused by Hetzner with `uniqueness_error`.

Nothing that lacks our label is ever unassigned or deleted, whatever the caller asks: the egress
host's own address is a Primary IP too.

Hetzner's documented limits the operator must know (docs/egress-providers.md): a server holds
one Primary IPv4, and assign/unassign need the server powered off."""

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from typing import Any

from adapters.egress.hetzner.api_client import HetznerApiClient
from adapters.egress.hetzner.errors import HetznerApiError, HetznerNoAnswer, NotOurPrimaryIp
from application.ports.egress_provider import (
    EgressAttachRefused,
    EgressProviderExhausted,
    EgressProviderUnavailable,
    ProviderAddress,
)

log = logging.getLogger(__name__)

MANAGED_BY = ("managed-by", "bulwark")
LABEL_KEY = "bulwark-egress"
PAGE_SIZE = 50  # Hetzner's largest page
MAX_PAGES = 1000
# Hetzner label values: up to 63 characters, alphanumeric at both ends, `-_.` inside.
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
# Codes meaning "no more addresses for this project/location", not "try the same call again soon".
EXHAUSTED_CODES = frozenset({"resource_limit_exceeded", "resource_unavailable"})
# The egress host cannot take another Primary IPv4 (it holds one), or not while it runs.
HOST_REFUSES_CODES = frozenset({"server_has_ipv4", "server_not_stopped"})


class HetznerPrimaryIpProvider:
    name = "hetzner"
    grows = True

    def __init__(self, api: HetznerApiClient, *, server_id: int, datacenter: str) -> None:
        self._api = api
        self._server_id = server_id
        self._datacenter = datacenter

    # --- the port --------------------------------------------------------------------------------

    async def owned(self) -> Sequence[ProviderAddress]:
        found: list[ProviderAddress] = []
        for ip in await self._list(_selector()):
            if ip.get("type") == "ipv4":
                found.append(_address(ip))
        return found

    async def acquire(self, label: str) -> ProviderAddress:
        _check_label(label)
        selector = _selector(label)
        attempts = self._api.retry.attempts
        problem = ""
        for attempt in range(1, attempts + 1):
            existing = [ip for ip in await self._list(selector) if ip.get("type") == "ipv4"]
            if existing:
                if len(existing) > 1:
                    # Only a hand-made twin can do this; the orphan audit shows the others.
                    log.warning(
                        "%d Primary IPs carry egress label %s; adopting the oldest", len(existing), label
                    )
                return _address(min(existing, key=lambda ip: int(ip["id"])))
            if attempt == 1:
                await self._check_room()
            try:
                _status, body = await self._api.call(
                    "POST", "/primary_ips", json=self._create_body(label), repeatable=False
                )
            except HetznerNoAnswer as error:
                # Created or not, we cannot tell: look it up by label before trying again.
                problem = str(error)
                log.warning("egress create for %s unanswered (%s); looking it up", label, error)
            except HetznerApiError as error:
                if error.code in EXHAUSTED_CODES:
                    raise EgressProviderExhausted(str(error)) from None
                if error.code != "uniqueness_error":
                    raise
                # Our name exists: a create we never heard back from made it; the next look-up
                # adopts it, unless someone took our labels off it (then the message says so).
                problem = f"{error} (does bulwark-egress-{label} exist without our labels?)"
            else:
                return _address(body["primary_ip"])
            if attempt < attempts:
                await asyncio.sleep(self._api.retry.backoff(attempt))
        raise EgressProviderUnavailable(
            f"Hetzner: no Primary IP for egress label {label} after {attempts} tries: {problem}"
        )

    async def _check_room(self) -> None:
        """Created only when the egress host could take it: Hetzner assigns one Primary IPv4 per
        server, and only while it is powered off. An address that cannot be attached would be
        billed for nothing (and given back at once), every time a waiting user is retried."""
        _status, body = await self._api.call("GET", f"/servers/{self._server_id}")
        server = body.get("server") or {}
        held = (server.get("public_net") or {}).get("ipv4")
        if held:
            raise EgressProviderExhausted(
                f"Hetzner: the egress host (server {self._server_id}) holds its one Primary IPv4 "
                f"({held.get('ip')}); a second cannot be assigned"
            )
        if server.get("status") != "off":
            raise EgressProviderExhausted(
                f"Hetzner: the egress host (server {self._server_id}) is {server.get('status')}; "
                "Primary IPs are assigned only to a powered-off server"
            )

    async def attach(self, address: ProviderAddress) -> None:
        ip = await self._ours(address)
        if ip is None:
            raise NotOurPrimaryIp(f"Primary IP {address.provider_ref} ({address.address}) no longer exists")
        if ip.get("assignee_id") == self._server_id:
            return
        if ip.get("assignee_id") is not None:
            raise NotOurPrimaryIp(
                f"Primary IP {address.address} is assigned to server {ip['assignee_id']}, "
                f"not the egress host {self._server_id}"
            )
        try:
            _status, body = await self._api.call(
                "POST",
                f"/primary_ips/{address.provider_ref}/actions/assign",
                json={"assignee_id": self._server_id, "assignee_type": "server"},
            )
        except HetznerApiError as error:
            if error.code in HOST_REFUSES_CODES:
                raise EgressAttachRefused(str(error)) from None
            raise
        await self._finish(body.get("action"))

    async def detach(self, address: ProviderAddress) -> None:
        ip = await self._ours(address)
        if ip is None or ip.get("assignee_id") is None:
            return  # gone or unassigned: not routed to anyone
        await self._unassign(address)

    async def release(self, address: ProviderAddress) -> bool:
        ip = await self._ours(address)
        if ip is None:
            return True  # already gone
        if ip.get("assignee_id") is not None:
            await self._unassign(address)  # Hetzner refuses to delete an assigned IP
        # 404: a delete whose answer was lost took it already.
        await self._api.call("DELETE", f"/primary_ips/{address.provider_ref}", gone_ok=True)
        return True

    # --- helpers ---------------------------------------------------------------------------------

    def _create_body(self, label: str) -> dict[str, Any]:
        return {
            "name": f"bulwark-egress-{label}",
            "type": "ipv4",
            "assignee_type": "server",
            "datacenter": self._datacenter,
            "auto_delete": False,  # the ledger decides when an address goes, not a server's deletion
            "labels": {MANAGED_BY[0]: MANAGED_BY[1], LABEL_KEY: label},
        }

    async def _list(self, selector: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        page: int | None = 1
        for _ in range(MAX_PAGES):
            if page is None:
                return found
            _status, body = await self._api.call(
                "GET",
                "/primary_ips",
                params={"label_selector": selector, "page": page, "per_page": PAGE_SIZE},
            )
            found.extend(body.get("primary_ips", []))
            page = body.get("meta", {}).get("pagination", {}).get("next_page")
        raise EgressProviderUnavailable(f"Hetzner: more than {MAX_PAGES} pages of Primary IPs")

    async def _ours(self, address: ProviderAddress) -> dict[str, Any] | None:
        """The IP the ledger names, None when gone; refuses one that is not ours or not that IP."""
        if not address.provider_ref.isdigit():
            raise NotOurPrimaryIp(f"{address.provider_ref!r} is not a Hetzner Primary IP id")
        status, body = await self._api.call("GET", f"/primary_ips/{address.provider_ref}", gone_ok=True)
        if status == 404:
            return None
        ip: dict[str, Any] = body["primary_ip"]
        labels = ip.get("labels") or {}
        if labels.get(MANAGED_BY[0]) != MANAGED_BY[1]:
            raise NotOurPrimaryIp(
                f"Primary IP {address.provider_ref} ({ip.get('ip')}) is not labelled "
                "managed-by=bulwark; left alone"
            )
        if ip.get("ip") != address.address:
            raise NotOurPrimaryIp(
                f"Primary IP {address.provider_ref} is {ip.get('ip')}, not {address.address}; left alone"
            )
        return ip

    async def _unassign(self, address: ProviderAddress) -> None:
        _status, body = await self._api.call("POST", f"/primary_ips/{address.provider_ref}/actions/unassign")
        await self._finish(body.get("action"))

    async def _finish(self, action: dict[str, Any] | None) -> None:
        """Waits for an action (assign/unassign) to succeed; its failure is Hetzner's answer."""
        deadline = time.monotonic() + self._api.retry.action_timeout
        while action is not None and action.get("status") == "running":
            if time.monotonic() > deadline:
                raise EgressProviderUnavailable(
                    f"Hetzner action {action.get('id')} still running; try again later"
                )
            await asyncio.sleep(self._api.retry.action_poll)
            _status, body = await self._api.call("GET", f"/actions/{action['id']}")
            action = body.get("action")
        if action is not None and action.get("status") == "error":
            error = action.get("error") or {}
            raise HetznerApiError(
                422,
                str(error.get("code", "action_failed")),
                f"Hetzner action {action.get('command')} failed: {error.get('message', '')}",
            )


def _check_label(label: str) -> None:
    if not _LABEL_VALUE.match(label):
        # A programming error in the caller, not a provider state: fail loudly.
        raise ValueError(
            f"egress label {label!r} is not a Hetzner label value "
            "(1-63 of A-Z a-z 0-9 - _ ., alphanumeric at both ends)"
        )


def _selector(label: str | None = None) -> str:
    selector = f"{MANAGED_BY[0]}={MANAGED_BY[1]}"
    return selector if label is None else f"{selector},{LABEL_KEY}={label}"


def _address(ip: dict[str, Any]) -> ProviderAddress:
    return ProviderAddress(
        address=str(ip["ip"]), provider_ref=str(ip["id"]), labels=dict(ip.get("labels") or {})
    )
