"""Squid's cache manager, read over HTTP on its loopback port: `active_requests` lists every
open client connection with the proxy username of the login it used, and `username_cache` the
logins whose helper answer Squid may still reuse without asking (check TTL above zero). Our
usernames are `<user id>@<address>~<fingerprint>`, so each says whose it is and where it leaves
from."""

from collections.abc import Sequence
from uuid import UUID

import httpx

from application.ports.egress_gateway import EgressGatewayUnavailable, GatewayBinding
from domain.egress_credentials import parse_holder, parse_proxy_username


def _holder(username: str) -> tuple[UUID, str] | None:
    """Whose tunnel this is. Also reads the login of before the credential's fingerprint
    (`<user>@<address>`): a tunnel opened before that upgrade must still count until it ends,
    or a detach would be confirmed under it. Admission never accepts that form."""
    parsed = parse_proxy_username(username)
    if parsed is not None:
        return parsed.user_id, parsed.address
    user, sep, address = username.partition("@")
    return parse_holder(user, address) if sep else None


def tunnels_in(active_requests: str) -> list[GatewayBinding]:
    """Every tunnel in an `active_requests` page whose username is one of ours."""
    found: list[GatewayBinding] = []
    for block in active_requests.split("\n\n"):
        fields = dict(line.strip().partition(" ")[::2] for line in block.splitlines() if line.strip())
        parsed = _holder(fields.get("username", "-").strip())
        if parsed is not None:
            found.append(GatewayBinding(user_id=parsed[0], address=parsed[1]))
    return found


def admitted_in(username_cache: str) -> list[GatewayBinding]:
    """Logins Squid would admit right now from its cache (state Ok, check TTL not run out)."""
    found: list[GatewayBinding] = []
    for line in username_cache.splitlines():
        columns = line.split()
        if len(columns) < 5 or columns[1] != "Ok":
            continue
        try:
            check_ttl = int(columns[2])
        except ValueError:
            continue
        parsed = _holder(columns[4])
        if parsed is not None and check_ttl > 0:
            found.append(GatewayBinding(user_id=parsed[0], address=parsed[1]))
    return found


class SquidManager:
    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.timeout = timeout

    async def open_tunnels(self) -> Sequence[GatewayBinding]:
        # Squid lists the manager's own request among the active ones: a page without it is not
        # Squid's (another server on the port, an error page), and must not read as "no tunnels".
        page = await self._page("active_requests")
        if "/squid-internal-mgr/active_requests" not in page:
            raise EgressGatewayUnavailable("the cache manager's active_requests page is not Squid's")
        return tunnels_in(page)

    async def admitted_logins(self) -> Sequence[GatewayBinding]:
        page = await self._page("username_cache")
        if "Cached Usernames:" not in page:
            raise EgressGatewayUnavailable("the cache manager's username_cache page is not Squid's")
        return admitted_in(page)

    async def _page(self, action: str) -> str:
        try:
            async with httpx.AsyncClient(timeout=self.timeout, trust_env=False) as client:
                answer = await client.get(self.base_url + action)
        except httpx.HTTPError as error:
            raise EgressGatewayUnavailable(f"Squid's cache manager did not answer: {error}") from error
        if answer.status_code != 200:
            raise EgressGatewayUnavailable(f"Squid's cache manager answered {answer.status_code} to {action}")
        return answer.text
