"""Hetzner Cloud API calls with bounded retries: capped exponential backoff (with jitter) on 429,
5xx and connection errors, waiting for `RateLimit-Reset` when the project's budget is spent.

Other 4xx are not retried: they are answers, raised as HetznerApiError with Hetzner's own code.
A call that is not safe to repeat (a create) is retried only on 429, which Hetzner answers without
carrying the request out; a lost answer or a 5xx raises HetznerNoAnswer and the caller decides
(the provider looks the create up by label before trying again).

The token is sent in the Authorization header and appears in no message, repr or log line."""

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from adapters.egress.hetzner.errors import HetznerApiError, HetznerNoAnswer
from application.ports.egress_provider import EgressProviderUnavailable

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # tries per call, the first included
    base_delay: float = 0.5  # seconds before the first retry; doubles each time
    max_delay: float = 30.0  # no single wait is longer (a RateLimit-Reset further away included)
    timeout: float = 15.0  # per request
    action_timeout: float = 120.0  # an assign/unassign still running after this is "unavailable"
    action_poll: float = 1.0

    def backoff(self, retry: int) -> float:
        """Wait before retry number `retry` (1-based): half fixed, half random ("equal jitter"),
        so workers that failed together do not come back together."""
        ceiling = min(self.max_delay, self.base_delay * float(1 << max(0, retry - 1)))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter, not a secret


class HetznerApiClient:
    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._token = token
        self.retry = retry
        self._sleep = sleep
        self._transport = transport
        # Built once: loading the CA bundle costs ~40 ms, more than a call to the API.
        self._tls = httpx.create_ssl_context()

    def __repr__(self) -> str:
        return f"HetznerApiClient(base_url={self._base_url!r}, token=<hidden>)"

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
        repeatable: bool = True,
        gone_ok: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """(status, JSON body or {}) of a 2xx answer, or of a 404 when `gone_ok` (the caller reads
        it as "that IP is gone"; anywhere else a 404 is a wrong URL and an error).
        Raises HetznerApiError for other 4xx, HetznerNoAnswer for a lost answer or 5xx of a call
        that is not `repeatable`, EgressProviderUnavailable once the retries are spent."""
        problem = ""
        for attempt in range(1, self.retry.attempts + 1):
            wait = self.retry.backoff(attempt)
            try:
                # A client per call: providers run in jobs, CLIs and tests on different event
                # loops, and a call is rare enough that a fresh connection costs nothing.
                async with httpx.AsyncClient(
                    base_url=self._base_url,
                    headers={"Authorization": f"Bearer {self._token}", "User-Agent": "bulwark-egress"},
                    timeout=self.retry.timeout,
                    transport=self._transport,
                    verify=self._tls,
                ) as client:
                    response = await client.request(method, path, json=json, params=params)
            except httpx.TransportError as error:
                problem = f"no answer ({type(error).__name__})"
                if not repeatable:
                    raise HetznerNoAnswer(f"Hetzner API {method} {path}: {problem}") from None
            else:
                status = response.status_code
                if status < 300 or (status == 404 and gone_ok):
                    return status, _body(response)
                code, message = _error_of(response)
                problem = f"{status} {code}: {message}"
                if status == 429:
                    wait = max(wait, self._until_reset(response))
                elif status >= 500 and not repeatable:
                    raise HetznerNoAnswer(f"Hetzner API {method} {path}: {problem}")
                elif status not in RETRIED_STATUSES:
                    raise HetznerApiError(status, code, f"Hetzner API {method} {path}: {problem}")
            if attempt < self.retry.attempts:
                await self._sleep(wait)
        raise EgressProviderUnavailable(
            f"Hetzner API {method} {path}: {problem} (gave up after {self.retry.attempts} attempts)"
        )

    def _until_reset(self, response: httpx.Response) -> float:
        """Seconds until RateLimit-Reset (a UNIX time), capped: the budget refills gradually, so
        the full reset is an upper bound, never worth more than one capped wait."""
        try:
            reset = float(response.headers.get("RateLimit-Reset", ""))
        except ValueError:
            return 0.0
        return min(self.retry.max_delay, max(0.0, reset - time.time()))


def _body(response: httpx.Response) -> dict[str, Any]:
    if not response.content:
        return {}
    try:
        value = response.json()
    except ValueError:
        raise EgressProviderUnavailable(
            f"Hetzner API answered {response.status_code} with a body that is not JSON"
        ) from None
    if not isinstance(value, dict):
        raise EgressProviderUnavailable(f"Hetzner API answered {response.status_code} with a non-object body")
    return value


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """Hetzner's `{"error": {"code", "message"}}`, or what can be said of another body (a proxy's)."""
    try:
        error = response.json().get("error", {})
        return str(error.get("code", "unknown")), str(error.get("message", ""))[:300]
    except (ValueError, AttributeError):
        return "unknown", f"a non-JSON answer ({response.headers.get('content-type', 'no content type')})"
