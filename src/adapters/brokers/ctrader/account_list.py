"""cTrader Open API account list over the JSON WebSocket.

One short-lived connection per call: application auth (2100 -> 2101), then the account list for
the user's access token (2149 -> 2150). Heartbeats and messages for other requests are skipped;
the whole conversation, connect and close included, runs under one deadline."""

import asyncio
import json
import math
import uuid
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException
from websockets.protocol import State

from adapters.brokers.ctrader.redaction import error_code, scrub
from application.ports.ctrader import (
    BrokerAccount,
    BrokerRefused,
    BrokerTokenInvalid,
    BrokerUnavailable,
)

MAX_MESSAGE_BYTES = 1024 * 1024

PROTO_ERROR_RES = 50
HEARTBEAT_EVENT = 51
APPLICATION_AUTH_REQ = 2100
APPLICATION_AUTH_RES = 2101
ERROR_RES = 2142
GET_ACCOUNTS_BY_TOKEN_REQ = 2149
GET_ACCOUNTS_BY_TOKEN_RES = 2150

TOKEN_ERROR_CODES = frozenset({"CH_ACCESS_TOKEN_INVALID", "OA_AUTH_TOKEN_EXPIRED"})


class WebsocketCtraderAccounts:
    """`CtraderAccounts` against the Open API's JSON endpoint (e.g. wss://live.ctraderapi.com:5036)."""

    def __init__(
        self, *, client_id: str, client_secret: str, api_url: str, timeout_seconds: float = 10.0
    ) -> None:
        if not math.isfinite(timeout_seconds) or timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be a positive number")
        self._client_id = client_id
        self._client_secret = client_secret
        self._api_url = api_url
        self._timeout = timeout_seconds

    def __repr__(self) -> str:
        return f"WebsocketCtraderAccounts(client_id={self._client_id!r}, api_url={self._api_url!r})"

    async def list_accounts(self, access_token: str) -> list[BrokerAccount]:
        secrets = (access_token, self._client_secret)
        ws: ClientConnection | None = None
        accounts: list[BrokerAccount] | None = None
        try:
            async with asyncio.timeout(self._timeout):
                ws = await connect(
                    self._api_url,
                    max_size=MAX_MESSAGE_BYTES,
                    open_timeout=None,  # the deadline above bounds everything
                    ping_interval=None,  # one short conversation; cTrader has its own heartbeats
                    compression=None,
                )
                await self._request(
                    ws,
                    APPLICATION_AUTH_REQ,
                    {"clientId": self._client_id, "clientSecret": self._client_secret},
                    APPLICATION_AUTH_RES,
                    secrets,
                )
                payload = await self._request(
                    ws,
                    GET_ACCOUNTS_BY_TOKEN_REQ,
                    {"accessToken": access_token},
                    GET_ACCOUNTS_BY_TOKEN_RES,
                    secrets,
                )
                accounts = _accounts(payload)
                await ws.close()
            return accounts
        except TimeoutError:
            if accounts is not None:  # the deadline hit the polite close: the answer stands
                return accounts
            raise BrokerUnavailable("cTrader Open API timed out") from None
        except (OSError, WebSocketException):
            # `from None`: keep the library's text (and any frame it quotes) out of our errors.
            raise BrokerUnavailable("cTrader Open API connection failed or closed") from None
        finally:
            if ws is not None and ws.state is not State.CLOSED:
                # Error or deadline: do not wait for a polite close.
                ws.transport.abort()

    @staticmethod
    async def _request(
        ws: ClientConnection,
        payload_type: int,
        payload: dict[str, Any],
        expected: int,
        secrets: tuple[str, ...],
    ) -> dict[str, Any]:
        msg_id = str(uuid.uuid4())
        await ws.send(json.dumps({"clientMsgId": msg_id, "payloadType": payload_type, "payload": payload}))
        while True:
            message = _decode(await ws.recv())
            kind = message.get("payloadType")
            if kind == HEARTBEAT_EVENT:
                continue
            answer_id = message.get("clientMsgId")
            is_error = kind in (ERROR_RES, PROTO_ERROR_RES)
            # An error without clientMsgId can only be about us: one request is in flight.
            if answer_id != msg_id and not (is_error and answer_id is None):
                continue
            body = message.get("payload", {})
            if not isinstance(body, dict):
                raise BrokerUnavailable("cTrader Open API sent a malformed message")
            if kind == expected:
                return body
            if is_error:
                code = error_code(body.get("errorCode", "UNKNOWN"), secrets)
                description = scrub(body.get("description", ""), secrets)
                if kind == ERROR_RES and code in TOKEN_ERROR_CODES:
                    raise BrokerTokenInvalid(code, description)
                raise BrokerRefused(code, description)
            raise BrokerUnavailable(f"cTrader Open API answered payloadType {kind!r} to {payload_type}")


def _decode(raw: str | bytes) -> dict[str, Any]:
    try:
        message = json.loads(raw)
    except ValueError:
        raise BrokerUnavailable("cTrader Open API sent malformed JSON") from None
    if not isinstance(message, dict):
        raise BrokerUnavailable("cTrader Open API sent a malformed message")
    return message


def _int(value: object) -> int | None:
    # Protobuf's JSON mapping may write int64 as a string.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def _accounts(payload: dict[str, Any]) -> list[BrokerAccount]:
    # Protobuf's JSON omits empty and default fields: no list means no accounts, no isLive means demo.
    raw = payload.get("ctidTraderAccount", [])
    if not isinstance(raw, list):
        raise BrokerUnavailable("cTrader account list is malformed")
    accounts = []
    for item in raw:
        if not isinstance(item, dict):
            raise BrokerUnavailable("cTrader account list is malformed")
        account_id = _int(item.get("ctidTraderAccountId"))
        is_live = item.get("isLive", False)
        broker = item.get("brokerTitleShort", "")
        if account_id is None or not isinstance(is_live, bool) or not isinstance(broker, str):
            raise BrokerUnavailable("cTrader account list is malformed")
        login = item.get("traderLogin")
        accounts.append(
            BrokerAccount(
                ctid_trader_account_id=account_id,
                is_live=is_live,
                trader_login=_int(login) if login is not None else None,
                broker=broker,
            )
        )
    return accounts
