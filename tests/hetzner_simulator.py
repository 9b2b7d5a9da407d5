"""A Hetzner Cloud API stand-in on loopback: the Primary IP endpoints and actions Bulwark uses.

A real HTTP/1.1 server (asyncio + h11, the parser httpx itself uses) in the test's event loop, so a
test reads and changes its state directly. It follows Hetzner's documented shapes where the
adapter depends on them:

- `Authorization: Bearer <token>`; anything else is 401 `unauthorized`.
- Errors are `{"error": {"code", "message", "details"}}` with the documented status per code
  (400 invalid_input, 401 unauthorized, 403 resource_limit_exceeded, 404 not_found,
  409 uniqueness_error, 422 server_not_stopped / server_has_ipv4 / primary_ip_already_assigned /
  must_be_unassigned, 423 protected, 429 rate_limit_exceeded, 503 unavailable).
- Every answer carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (a UNIX
  time); a request over the limit is 429 and is not carried out.
- `POST /v1/primary_ips` {name, type, assignee_type, assignee_id | datacenter, auto_delete,
  labels} -> 201 {primary_ip, action}; names are unique; `assignee_id` and `datacenter` exclude
  each other. `GET /v1/primary_ips` filters by `label_selector` (`k=v`, `k==v`, `k!=v`, `k`, `!k`,
  comma = and), `name` and `ip`, and pages (`page`, `per_page` up to 50, `meta.pagination`).
- `POST /v1/primary_ips/{id}/actions/assign|unassign` -> 201 {action}; assigning needs the server
  powered off and without an IPv4 already (one Primary IPv4 per server), as documented.
- `DELETE /v1/primary_ips/{id}` -> 204; an assigned IP is refused with `must_be_unassigned`
  (Hetzner's rule since 1 May 2026), a protected one with `protected`.
- `GET /v1/actions/{id}` -> {action}; actions start `running` and finish on a later read.

Unassigning an IP that is not assigned is answered with a finished action (the documentation
does not say; the adapter checks first, so only a retried unassign whose answer was lost meets it).

Fault knobs (plain attributes) make the failures tests need: `lose_create_answers` and
`lose_delete_answers` (carried out, then the connection closes with no answer), `fail_creates`,
`fail_deletes` and `fail_requests` (5xx, nothing done), `throttle(seconds)` (429 until then), plus
`create_behind_back()` for an IP the ledger never heard of."""

import asyncio
import contextlib
import ipaddress
import itertools
import json
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import h11

DATACENTERS = {
    "fsn1-dc14": {
        "id": 4,
        "name": "fsn1-dc14",
        "description": "Falkenstein 1 virtual DC 14",
        "location": "fsn1",
    },
    "nbg1-dc3": {"id": 2, "name": "nbg1-dc3", "description": "Nuremberg 1 virtual DC 3", "location": "nbg1"},
}
RATE_LIMIT = 3600
MAX_PER_PAGE = 50
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


@dataclass
class SimServer:
    id: int
    datacenter: str = "fsn1-dc14"
    status: str = "off"  # "off" | "running": assign/unassign need "off"


@dataclass
class _Record:
    time: float
    method: str
    path: str
    status: int  # 0: the answer was lost


@dataclass
class _Sim:
    """Everything the simulator knows; separate from the server so tests read it plainly."""

    primary_ips: dict[int, dict[str, Any]] = field(default_factory=dict)
    actions: dict[int, dict[str, Any]] = field(default_factory=dict)
    action_reads: dict[int, int] = field(default_factory=dict)


class _Answer(Exception):
    def __init__(self, status: int, body: dict[str, Any] | None = None) -> None:
        self.status = status
        self.body = body


class _LoseAnswer(Exception):
    """Close the connection without answering (the request was carried out)."""


def _error(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> _Answer:
    return _Answer(status, {"error": {"code": code, "message": message, "details": details or {}}})


def _now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


class HetznerSimulator:
    """`async with HetznerSimulator(token=...) as sim:` then point the adapter at `sim.base_url`."""

    def __init__(
        self,
        *,
        token: str,
        servers: Iterable[SimServer] = (SimServer(id=1001),),
        host: str = "127.0.0.1",
        addresses: Iterable[str] | None = None,
    ) -> None:
        self.token = token
        self.host = host
        self.port = 0
        self.servers = {server.id: server for server in servers}
        self.quota: int | None = None  # most Primary IPs the project may hold
        self.action_reads_to_finish = 1  # reads of an action before it reports success
        # Fault knobs.
        self.lose_create_answers = 0
        self.fail_creates = 0
        self.lose_delete_answers = 0
        self.fail_deletes = 0
        self.fail_requests = 0
        self.fail_status = 503
        self.rate_limit_remaining = RATE_LIMIT
        self.rate_limited_until = 0.0
        # Records.
        self.requests: list[_Record] = []
        self.state = _Sim()
        self._free = iter(
            addresses
            if addresses is not None
            else (f"5.75.{n // 250}.{n % 250 + 2}" for n in itertools.count())
        )
        self._ids = itertools.count(100)
        self._action_ids = itertools.count(9000)
        self._server: asyncio.Server | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> "HetznerSimulator":
        self._server = await asyncio.start_server(self._connection, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # --- what tests look at and change -----------------------------------------------------------

    @property
    def primary_ips(self) -> list[dict[str, Any]]:
        return list(self.state.primary_ips.values())

    def throttle(self, seconds: float) -> float:
        """No request is carried out until `seconds` from now (429); returns that UNIX time."""
        self.rate_limited_until = time.time() + seconds
        return self.rate_limited_until

    def create_behind_back(
        self, *, labels: dict[str, str] | None = None, name: str | None = None
    ) -> dict[str, Any]:
        """An IP made outside Bulwark (a crash before the ledger recorded it, a human in the console)."""
        return self._new_ip(
            name=name or f"made-by-hand-{len(self.state.primary_ips)}",
            labels=labels or {},
            datacenter="fsn1-dc14",
        )

    def calls(self, method: str, path_prefix: str = "/v1/primary_ips") -> list[_Record]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    # --- HTTP ------------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await self._read_request(conn, reader)
                if request is None:
                    return
                try:
                    status, payload = self._handle(request, body)
                except _LoseAnswer:
                    return  # the `finally` closes the socket: the client sees no answer
                await self._send(conn, writer, status, payload)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (h11.RemoteProtocolError, ConnectionError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader
    ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)
                if not data and request is None:
                    return None, b""
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return request, body
            elif isinstance(event, h11.ConnectionClosed):
                return None, b""

    async def _send(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, status: int, payload: dict[str, Any] | None
    ) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        headers = [
            ("content-length", str(len(data))),
            ("ratelimit-limit", str(RATE_LIMIT)),
            ("ratelimit-remaining", str(self._remaining())),
            ("ratelimit-reset", str(self._reset())),
        ]
        if payload is not None:
            headers.append(("content-type", "application/json"))
        writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
        if data:
            writer.write(conn.send(h11.Data(data=data)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()

    def _remaining(self) -> int:
        return 0 if time.time() < self.rate_limited_until else self.rate_limit_remaining

    def _reset(self) -> int:
        # UNIX time at which the limit is whole again (rounded up: never earlier than the truth).
        return math.ceil(max(self.rate_limited_until, time.time()))

    def _handle(self, request: h11.Request, body: bytes) -> tuple[int, dict[str, Any] | None]:
        method = request.method.decode()
        target = urlsplit(request.target.decode())
        record = _Record(time.time(), method, target.path, 0)
        self.requests.append(record)
        try:
            self._check_token(request)
            if time.time() < self.rate_limited_until:
                raise _error(429, "rate_limit_exceeded", "limit of 3600 requests per hour reached")
            if self.fail_requests > 0:
                self.fail_requests -= 1
                raise _error(
                    self.fail_status, "unavailable", "A service that is needed is currently unavailable"
                )
            status, payload = self._route(method, target.path, dict(parse_qsl(target.query)), body)
        except _Answer as answer:
            status, payload = answer.status, answer.body
        except _LoseAnswer:
            raise
        record.status = status
        return status, payload

    def _check_token(self, request: h11.Request) -> None:
        given = dict(request.headers).get(b"authorization", b"")
        if given != f"Bearer {self.token}".encode():
            raise _error(401, "unauthorized", "Request was made with an invalid or unknown token")

    def _route(
        self, method: str, path: str, query: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any] | None]:
        parts = [p for p in path.split("/") if p]
        if parts[:1] != ["v1"]:
            raise _error(404, "not_found", "no such endpoint")
        parts = parts[1:]
        if parts == ["primary_ips"] and method == "GET":
            return 200, self._list(query)
        if parts == ["primary_ips"] and method == "POST":
            return self._create(_json(body))
        if len(parts) == 2 and parts[0] == "primary_ips" and method == "GET":
            return 200, {"primary_ip": self._ip(parts[1])}
        if len(parts) == 2 and parts[0] == "primary_ips" and method == "DELETE":
            return self._delete(parts[1])
        if len(parts) == 4 and parts[0] == "primary_ips" and parts[2] == "actions" and method == "POST":
            if parts[3] == "assign":
                return 201, {"action": self._assign(parts[1], _json(body))}
            if parts[3] == "unassign":
                return 201, {"action": self._unassign(parts[1])}
        if len(parts) == 2 and parts[0] == "servers" and method == "GET":
            return 200, {"server": self._server_view(parts[1])}
        if len(parts) == 2 and parts[0] == "actions" and method == "GET":
            return 200, {"action": self._read_action(parts[1])}
        raise _error(404, "not_found", f"no endpoint {method} {path}")

    def _server_view(self, raw_id: str) -> dict[str, Any]:
        """GET /servers/{id}, the fields Bulwark reads: status, datacenter, and public_net's
        Primary IPs (null when none is assigned)."""
        server = self.servers.get(int(raw_id)) if raw_id.isdigit() else None
        if server is None:
            raise _error(404, "not_found", f"Server with ID {raw_id!r} not found")

        def assigned(kind: str) -> dict[str, Any] | None:
            for ip in self.state.primary_ips.values():
                if ip["assignee_id"] == server.id and ip["type"] == kind:
                    return {"id": ip["id"], "ip": ip["ip"], "blocked": False}
            return None

        return {
            "id": server.id,
            "status": server.status,
            "datacenter": {"name": server.datacenter},
            "public_net": {"ipv4": assigned("ipv4"), "ipv6": assigned("ipv6")},
        }

    # --- Primary IPs -----------------------------------------------------------------------------

    def _list(self, query: dict[str, str]) -> dict[str, Any]:
        try:
            page = int(query.get("page", "1"))
            per_page = int(query.get("per_page", "25"))
        except ValueError:
            raise _error(400, "invalid_input", "page and per_page must be numbers") from None
        if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
            raise _error(400, "invalid_input", f"page >= 1 and per_page 1..{MAX_PER_PAGE}")
        selected = sorted(self.state.primary_ips.values(), key=lambda ip: ip["id"])
        if "label_selector" in query:
            match = _selector(query["label_selector"])
            selected = [ip for ip in selected if match(ip["labels"])]
        for key in ("name", "ip"):
            if key in query:
                selected = [ip for ip in selected if ip[key] == query[key]]
        last = max(1, -(-len(selected) // per_page))
        chunk = selected[(page - 1) * per_page : page * per_page]
        return {
            "primary_ips": chunk,
            "meta": {
                "pagination": {
                    "page": page,
                    "per_page": per_page,
                    "previous_page": page - 1 if page > 1 else None,
                    "next_page": page + 1 if page < last else None,
                    "last_page": last,
                    "total_entries": len(selected),
                }
            },
        }

    def _create(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.fail_creates > 0:
            self.fail_creates -= 1
            raise _error(self.fail_status, "unavailable", "A service that is needed is currently unavailable")
        name, kind, labels = body.get("name"), body.get("type"), body.get("labels", {})
        if not isinstance(name, str) or not name:
            raise _error(
                400, "invalid_input", "invalid input in field 'name'", {"fields": [{"name": "name"}]}
            )
        if kind not in ("ipv4", "ipv6"):
            raise _error(
                400, "invalid_input", "invalid input in field 'type'", {"fields": [{"name": "type"}]}
            )
        if body.get("assignee_type") != "server":
            raise _error(400, "invalid_input", "invalid input in field 'assignee_type'")
        _check_labels(labels)
        assignee, datacenter = body.get("assignee_id"), body.get("datacenter")
        if (assignee is None) == (datacenter is None):
            raise _error(400, "invalid_input", "exactly one of assignee_id and datacenter is needed")
        if datacenter is not None and datacenter not in DATACENTERS:
            raise _error(400, "invalid_input", f"datacenter {datacenter!r} not found")
        if any(ip["name"] == name for ip in self.state.primary_ips.values()):
            raise _error(
                409,
                "uniqueness_error",
                "Primary IP with the same name already exists",
                {"fields": [{"name": "name"}]},
            )
        if self.quota is not None and len(self.state.primary_ips) >= self.quota:
            raise _error(
                403,
                "resource_limit_exceeded",
                "primary_ip limit exceeded",
                {"limits": [{"name": "primary_ip_limit"}]},
            )
        if assignee is not None:
            server = self._server_for_assign(assignee, kind)
            datacenter = server.datacenter
        ip = self._new_ip(
            name=name,
            labels=labels,
            datacenter=datacenter,
            kind=kind,
            auto_delete=bool(body.get("auto_delete", False)),
        )
        action = None
        if assignee is not None:
            ip["assignee_id"] = assignee
            action = self._new_action("create_primary_ip", ip["id"])
        if self.lose_create_answers > 0:
            self.lose_create_answers -= 1
            raise _LoseAnswer
        return 201, {"primary_ip": ip, "action": action}

    def _new_ip(
        self,
        *,
        name: str,
        labels: dict[str, str],
        datacenter: str,
        kind: str = "ipv4",
        auto_delete: bool = False,
    ) -> dict[str, Any]:
        taken = {ip["ip"] for ip in self.state.primary_ips.values()}
        address = next(a for a in self._free if a not in taken)
        ident = next(self._ids)
        dc = DATACENTERS[datacenter]
        ip = {
            "id": ident,
            "name": name,
            "ip": address,
            "type": kind,
            "labels": dict(labels),
            "created": _now_iso(),
            "blocked": False,
            "protection": {"delete": False},
            "assignee_id": None,
            "assignee_type": "server",
            "auto_delete": auto_delete,
            "dns_ptr": [
                {
                    "ip": address,
                    "dns_ptr": f"static.{'.'.join(reversed(address.split('.')))}.clients.your-server.de",
                }
            ],
            "datacenter": {
                "id": dc["id"],
                "name": dc["name"],
                "description": dc["description"],
                "location": {"name": dc["location"]},
            },
        }
        ipaddress.IPv4Address(address)  # the simulator hands out IPv4 only
        self.state.primary_ips[ident] = ip
        return ip

    def _ip(self, raw_id: str) -> dict[str, Any]:
        try:
            return self.state.primary_ips[int(raw_id)]
        except (ValueError, KeyError):
            raise _error(404, "not_found", f"Primary IP with ID {raw_id!r} not found") from None

    def _server_for_assign(self, assignee: Any, kind: str) -> SimServer:
        server = self.servers.get(assignee) if isinstance(assignee, int) else None
        if server is None:
            raise _error(404, "not_found", f"Server with ID {assignee!r} not found")
        if server.status != "off":
            raise _error(422, "server_not_stopped", "The Server is running, but needs to be powered off")
        if any(
            ip["assignee_id"] == server.id and ip["type"] == kind for ip in self.state.primary_ips.values()
        ):
            raise _error(
                422, f"server_has_{kind}", f"The Server already has an {kind.upper()[:2]}{kind[2:]} address"
            )
        return server

    def _assign(self, raw_id: str, body: dict[str, Any]) -> dict[str, Any]:
        ip = self._ip(raw_id)
        if body.get("assignee_type") != "server":
            raise _error(400, "invalid_input", "invalid input in field 'assignee_type'")
        if ip["assignee_id"] is not None:
            raise _error(
                422, "primary_ip_already_assigned", "Primary IP is already assigned to a different Server"
            )
        server = self._server_for_assign(body.get("assignee_id"), ip["type"])
        if server.datacenter != ip["datacenter"]["name"]:
            raise _error(
                422, "invalid_input", "a Primary IP can only be assigned to a Server in its datacenter"
            )
        ip["assignee_id"] = server.id
        return self._new_action("assign_primary_ip", ip["id"])

    def _unassign(self, raw_id: str) -> dict[str, Any]:
        ip = self._ip(raw_id)
        if ip["assignee_id"] is not None:
            server = self.servers.get(ip["assignee_id"])
            if server is not None and server.status != "off":
                raise _error(422, "server_not_stopped", "The Server is running, but needs to be powered off")
            ip["assignee_id"] = None
        return self._new_action("unassign_primary_ip", ip["id"])

    def _delete(self, raw_id: str) -> tuple[int, None]:
        ip = self._ip(raw_id)
        if self.fail_deletes > 0:
            self.fail_deletes -= 1
            raise _error(self.fail_status, "unavailable", "A service that is needed is currently unavailable")
        if ip["protection"]["delete"]:
            raise _error(423, "protected", "Primary IP is delete protected")
        if ip["assignee_id"] is not None:
            raise _error(422, "must_be_unassigned", "Primary IP must be unassigned before it can be deleted")
        del self.state.primary_ips[ip["id"]]
        if self.lose_delete_answers > 0:
            self.lose_delete_answers -= 1
            raise _LoseAnswer
        return 204, None

    # --- actions ---------------------------------------------------------------------------------

    def _new_action(self, command: str, resource_id: int) -> dict[str, Any]:
        ident = next(self._action_ids)
        action = {
            "id": ident,
            "command": command,
            "status": "running",
            "progress": 0,
            "started": _now_iso(),
            "finished": None,
            "resources": [{"id": resource_id, "type": "primary_ip"}],
            "error": None,
        }
        self.state.actions[ident] = action
        self.state.action_reads[ident] = 0
        return dict(action)

    def _read_action(self, raw_id: str) -> dict[str, Any]:
        try:
            action = self.state.actions[int(raw_id)]
        except (ValueError, KeyError):
            raise _error(404, "not_found", f"Action with ID {raw_id!r} not found") from None
        self.state.action_reads[action["id"]] += 1
        if self.state.action_reads[action["id"]] >= self.action_reads_to_finish:
            action.update(status="success", progress=100, finished=_now_iso())
        return dict(action)


def _json(body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    try:
        value = json.loads(body)
    except ValueError:
        raise _error(400, "json_error", "Invalid JSON in request body") from None
    if not isinstance(value, dict):
        raise _error(400, "json_error", "The request body must be a JSON object")
    return value


def _check_labels(labels: Any) -> None:
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and _LABEL_KEY.match(k) and _LABEL_VALUE.match(v)
        for k, v in labels.items()
    ):
        raise _error(
            400, "invalid_input", "invalid input in field 'labels'", {"fields": [{"name": "labels"}]}
        )


def _selector(text: str) -> Any:
    """Hetzner's label selector: comma-separated terms, all must hold."""
    terms = []
    for term in (t.strip() for t in text.split(",") if t.strip()):
        if "!=" in term:
            key, value = term.split("!=", 1)
            terms.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif "==" in term or "=" in term:
            key, value = term.split("==", 1) if "==" in term else term.split("=", 1)
            terms.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif term.startswith("!"):
            terms.append(lambda labels, k=term[1:]: k not in labels)
        else:
            terms.append(lambda labels, k=term: k in labels)
    return lambda labels: all(term(labels) for term in terms)
