"""A cTrader stand-in on loopback: OAuth (`/apps/auth`, `/apps/token`) and the Open API JSON WebSocket.

Real sockets, one port: plain HTTP GETs to /apps/* are answered from `process_request`, every other
request is upgraded to the WebSocket. It follows cTrader's documented behaviour where the adapters
depend on it: token calls are GETs with the secret in the query, errors come as `errorCode` and
`description` under HTTP 200, codes are single use and short-lived, refresh tokens are single use
and rotate the access token too. Fault knobs let tests lose answers after the broker acted."""

import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

CODE_LIFETIME_SECONDS = 60

PROTO_ERROR_RES = 50
HEARTBEAT_EVENT = 51
APPLICATION_AUTH_REQ = 2100
APPLICATION_AUTH_RES = 2101
ERROR_RES = 2142
GET_ACCOUNTS_BY_TOKEN_REQ = 2149
GET_ACCOUNTS_BY_TOKEN_RES = 2150


def default_user() -> list[dict[str, Any]]:
    return [
        {
            "ctidTraderAccountId": 40001,
            "isLive": True,
            "traderLogin": 7001,
            "brokerTitleShort": "IC Markets",
        },
        {
            "ctidTraderAccountId": 40002,
            "isLive": False,
            "traderLogin": 7002,
            "brokerTitleShort": "IC Markets",
        },
    ]


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    scope: str
    accounts: list[dict[str, Any]]
    issued_at: float
    used: bool = False


@dataclass
class _Grant:
    """One access + refresh token pair; `alive` goes False on rotation or revocation."""

    access_token: str
    refresh_token: str
    scope: str
    accounts: list[dict[str, Any]]
    issued_at: float
    expires_in: int
    alive: bool = True
    rotated: int = 0  # times its refresh token was exchanged (0 or 1: single use)


@dataclass
class _Stats:
    token_requests: int = 0
    ws_messages: list[int] = field(default_factory=list)


class CtraderSimulator:
    """`async with CtraderSimulator(client_id=..., client_secret=...) as sim:` then use
    `sim.auth_url`, `sim.token_url`, `sim.ws_url`; knobs and records are plain attributes."""

    def __init__(self, *, client_id: str, client_secret: str, host: str = "127.0.0.1") -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.host = host
        self.consent = "approve"  # or "deny"
        self.user: list[dict[str, Any]] = default_user()
        self.expires_in = 2_628_000
        # Fault knobs.
        self.token_delay = 0.0
        self.drop_next_token_answers = 0
        self.token_http_500 = 0
        self.token_http_status: int | None = None  # next token answer only, nothing processed (429...)
        self.ws_drop = False
        self.ws_delay = 0.0
        self.ws_heartbeats = True  # a heartbeat (51) before every answer, as noise to skip
        # Records.
        self.issued_tokens: set[str] = set()
        self.refresh_calls: dict[str, int] = {}
        self.stats = _Stats()
        self._offset = 0.0
        self._codes: dict[str, _Code] = {}
        self._by_access: dict[str, _Grant] = {}
        self._by_refresh: dict[str, _Grant] = {}
        self._server: Server | None = None
        self.port = 0

    # --- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> "CtraderSimulator":
        self._server = await serve(
            self._ws_session, self.host, 0, process_request=self._process_request, compression=None
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def auth_url(self) -> str:
        return f"{self.base_url}/apps/auth"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/apps/token"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    # --- clock and state -------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds

    def revoke_user(self) -> None:
        """The user revoked the app in cTrader: every token and unused code dies."""
        for grant in self._by_access.values():
            grant.alive = False
        for code in self._codes.values():
            code.used = True

    def refresh_spent(self, refresh_token: str) -> int:
        """How many times this refresh token was exchanged for a new pair (single use: 0 or 1)."""
        grant = self._by_refresh.get(refresh_token)
        return grant.rotated if grant else 0

    def is_access_token_live(self, access_token: str) -> bool:
        grant = self._by_access.get(access_token)
        return grant is not None and self._live(grant)

    def is_refresh_token_live(self, refresh_token: str) -> bool:
        grant = self._by_refresh.get(refresh_token)
        return grant is not None and grant.alive

    def issue_code(self, *, redirect_uri: str, scope: str = "trading") -> str:
        """A code as if the user had consented (skips the browser step)."""
        code = secrets.token_urlsafe(24)
        self._codes[code] = _Code(self.client_id, redirect_uri, scope, [dict(a) for a in self.user], self.now)
        return code

    def _live(self, grant: _Grant) -> bool:
        return grant.alive and self.now < grant.issued_at + grant.expires_in

    def _new_grant(self, scope: str, accounts: list[dict[str, Any]]) -> _Grant:
        grant = _Grant(
            access_token=secrets.token_urlsafe(32),
            refresh_token=secrets.token_urlsafe(32),
            scope=scope,
            accounts=accounts,
            issued_at=self.now,
            expires_in=self.expires_in,
        )
        self._by_access[grant.access_token] = grant
        self._by_refresh[grant.refresh_token] = grant
        self.issued_tokens.update((grant.access_token, grant.refresh_token))
        return grant

    # --- HTTP ------------------------------------------------------------------------------------

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        query = {key: values[0] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
        if parts.path == "/apps/auth":
            return self._auth(connection, query)
        if parts.path == "/apps/token":
            return await self._token(connection, query)
        return None  # anything else: the WebSocket handshake

    def _auth(self, connection: ServerConnection, query: dict[str, str]) -> Response:
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or not redirect_uri.startswith(("http://", "https://")):
            return connection.respond(400, "Bad request: unknown application or redirect URI\n")
        state = query.get("state", "")
        if self.consent == "approve":
            code = self.issue_code(redirect_uri=redirect_uri, scope=query.get("scope", "accounts"))
            params = {"code": code, "state": state}
        else:
            params = {"error": "access_denied", "state": state}
        target = urlsplit(redirect_uri)
        joined = f"{target.query}&{urlencode(params)}" if target.query else urlencode(params)
        response = connection.respond(302, "")
        response.headers["Location"] = urlunsplit(
            (target.scheme, target.netloc, target.path, joined, target.fragment)
        )
        return response

    async def _token(self, connection: ServerConnection, query: dict[str, str]) -> Response:
        self.stats.token_requests += 1
        if self.token_http_status is not None:
            status, self.token_http_status = self.token_http_status, None
            return connection.respond(status, "Too Many Requests\n")
        if self.token_http_500 > 0:
            self.token_http_500 -= 1
            return connection.respond(500, "Internal Server Error\n")
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        answer = self._token_answer(query)
        if self.drop_next_token_answers > 0:
            # The broker acted (a refresh token is spent) but the answer never arrives.
            self.drop_next_token_answers -= 1
            connection.transport.abort()
        return _json_response(answer)

    def _token_answer(self, query: dict[str, str]) -> dict[str, Any]:
        grant_type = query.get("grant_type")
        if grant_type == "refresh_token" and "refresh_token" in query:
            token = query["refresh_token"]
            self.refresh_calls[token] = self.refresh_calls.get(token, 0) + 1
        if query.get("client_id") != self.client_id or query.get("client_secret") != self.client_secret:
            return _error("ACCESS_DENIED", "Client authentication failed")
        if grant_type == "authorization_code":
            code = self._codes.get(query.get("code", ""))
            if code is None or code.used:
                return _error("ACCESS_DENIED", "Authorization code is invalid or already used")
            if self.now - code.issued_at >= CODE_LIFETIME_SECONDS:
                return _error("ACCESS_DENIED", "Authorization code has expired")
            if query.get("redirect_uri") != code.redirect_uri or code.client_id != query.get("client_id"):
                return _error("INVALID_REQUEST", "redirect_uri does not match the authorization request")
            code.used = True
            return _tokens(self._new_grant(code.scope, code.accounts))
        if grant_type == "refresh_token":
            old = self._by_refresh.get(query.get("refresh_token", ""))
            if old is None or not old.alive:
                return _error("ACCESS_DENIED", "Refresh token is invalid")
            old.alive = False  # single use: the old access token dies with it
            old.rotated += 1
            return _tokens(self._new_grant(old.scope, old.accounts))
        return _error("INVALID_REQUEST", "Unsupported or missing grant_type")

    # --- WebSocket -------------------------------------------------------------------------------

    async def _ws_session(self, connection: ServerConnection) -> None:
        app_authenticated = False
        try:
            async for raw in connection:
                try:
                    message = json.loads(raw)
                    kind = message["payloadType"]
                    msg_id = message.get("clientMsgId")
                    payload = message.get("payload", {})
                except (ValueError, KeyError, TypeError, AttributeError):
                    await connection.send(
                        json.dumps(
                            {
                                "payloadType": PROTO_ERROR_RES,
                                "payload": {"errorCode": "INVALID_REQUEST", "description": "bad message"},
                            }
                        )
                    )
                    continue
                self.stats.ws_messages.append(kind)
                if kind == HEARTBEAT_EVENT:
                    continue
                if self.ws_delay:
                    await asyncio.sleep(self.ws_delay)
                if self.ws_drop:
                    await connection.close()
                    return
                answer_type, answer = self._ws_answer(kind, payload, app_authenticated)
                if answer_type == APPLICATION_AUTH_RES:
                    app_authenticated = True
                if self.ws_heartbeats:
                    await connection.send(json.dumps({"payloadType": HEARTBEAT_EVENT}))
                out: dict[str, Any] = {"payloadType": answer_type, "payload": answer}
                if msg_id is not None:
                    out["clientMsgId"] = msg_id
                await connection.send(json.dumps(out))
        except ConnectionClosed:
            return

    def _ws_answer(self, kind: int, payload: Any, app_authenticated: bool) -> tuple[int, dict[str, Any]]:
        if not isinstance(payload, dict):
            return PROTO_ERROR_RES, {"errorCode": "INVALID_REQUEST", "description": "payload"}
        if kind == APPLICATION_AUTH_REQ:
            if (
                payload.get("clientId") == self.client_id
                and payload.get("clientSecret") == self.client_secret
            ):
                return APPLICATION_AUTH_RES, {}
            return ERROR_RES, _error("CH_CLIENT_AUTH_FAILURE", "clientId or clientSecret is incorrect")
        if kind == GET_ACCOUNTS_BY_TOKEN_REQ:
            if not app_authenticated:
                return ERROR_RES, _error("CH_CLIENT_NOT_AUTHENTICATED", "Application is not authorized")
            token = payload.get("accessToken", "")
            grant = self._by_access.get(token) if isinstance(token, str) else None
            if grant is None or not self._live(grant):
                return ERROR_RES, _error("CH_ACCESS_TOKEN_INVALID", "Invalid access token")
            return GET_ACCOUNTS_BY_TOKEN_RES, {
                "accessToken": token,
                "permissionScope": "SCOPE_TRADE" if grant.scope == "trading" else "SCOPE_VIEW",
                "ctidTraderAccount": [dict(a) for a in grant.accounts],
            }
        return PROTO_ERROR_RES, {"errorCode": "UNSUPPORTED_MESSAGE", "description": f"payloadType {kind}"}


def _error(code: str, description: str) -> dict[str, Any]:
    return {"errorCode": code, "description": description}


def _tokens(grant: _Grant) -> dict[str, Any]:
    return {
        "accessToken": grant.access_token,
        "tokenType": "bearer",
        "expiresIn": grant.expires_in,
        "refreshToken": grant.refresh_token,
    }


def _json_response(body: dict[str, Any]) -> Response:
    data = json.dumps(body).encode()
    headers = Headers(
        [("Content-Type", "application/json"), ("Content-Length", str(len(data))), ("Connection", "close")]
    )
    # cTrader reports errors in the body under HTTP 200.
    return Response(200, "OK", headers, data)
