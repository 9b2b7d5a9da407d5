"""The bridge API an MT5 Expert Advisor calls with `X-API-Key` (MQL5 WebRequest: plain headers,
small JSON), and `POST /api/v1/authz/bridge` for the platform's services."""

from typing import Annotated, Any, TypeVar
from uuid import UUID

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import FromPath, Parameter

from application.errors import InvalidInput, NotAuthenticated
from application.use_cases.bridge_api import Hello
from domain.bridges import Deal, Position
from entrypoints.dto.bridges import (
    BatchAnswer,
    BridgeAnswer,
    BridgeAuthzAccount,
    BridgeAuthzAnswer,
    CommandList,
    CommandView,
    DealsRequest,
    HeartbeatRequest,
    HelloRequest,
    PositionsRequest,
)
from entrypoints.http.api_key import api_key_in
from entrypoints.http.dependencies import ContainerDep
from entrypoints.http.fast_path import raise_precomputed_failure
from entrypoints.http.request_context import request_context

Req = Request[Any, Any, Any]
T = TypeVar("T")
# A batch of 500 deals or positions is about 100 KiB; bounded all the same.
BATCH_MAX_BYTES = 512 * 1024


async def strict_body(request: Req, kind: type[T]) -> T:
    """Decoded strictly: an EA sending "12345" for a number has a bug worth a 400, not a guess."""
    try:
        return msgspec.json.decode(await request.body(), type=kind, strict=True)
    except msgspec.ValidationError as error:
        raise InvalidInput(f"Invalid body: {error}", code="invalid_request") from None
    except msgspec.DecodeError:
        raise InvalidInput("The body is not valid JSON.", code="malformed_json") from None


def api_key(request: Req) -> str:
    key = api_key_in(request.scope["headers"])
    if key is None:
        raise NotAuthenticated("Send the bridge key as `X-API-Key`.", code="invalid_api_key")
    return key


class BridgeApiController(Controller):
    path = "/api/bridge/v1"
    tags = ["bridge-api"]

    @post("/hello", status_code=200, operation_id="bridgeHello")
    async def hello(self, container: ContainerDep, request: Req) -> BridgeAnswer:
        data = await strict_body(request, HelloRequest)
        report = Hello(
            login=data.login,
            server=data.server,
            company=data.company,
            currency=data.currency,
            leverage=data.leverage,
            trade_mode=data.trade_mode,
            terminal_build=data.terminal_build,
            ea_version=data.ea_version,
        )
        bridge = await container.bridges.hello(api_key(request), report, request_context(request))
        return BridgeAnswer(bridge_id=bridge.id, status="online")

    @post("/heartbeat", status_code=200, operation_id="bridgeHeartbeat")
    async def heartbeat(self, container: ContainerDep, request: Req) -> BridgeAnswer:
        raise_precomputed_failure(request.scope)  # type: ignore[arg-type]
        data = await strict_body(request, HeartbeatRequest)
        bridge = await container.bridges.heartbeat(
            api_key(request), data.heartbeat(), request_context(request)
        )
        return BridgeAnswer(bridge_id=bridge.id, status="online")

    @post("/deals", status_code=200, operation_id="bridgeDeals", request_max_body_size=BATCH_MAX_BYTES)
    async def deals(self, container: ContainerDep, request: Req) -> BatchAnswer:
        data = await strict_body(request, DealsRequest)
        deals = [
            Deal(
                ticket=d.ticket,
                time=d.time,
                symbol=d.symbol,
                type=d.type,
                entry=d.entry,
                volume=d.volume,
                price=d.price,
                profit=d.profit,
                commission=d.commission,
                swap=d.swap,
                magic=d.magic,
                comment=d.comment,
                order=d.order,
            )
            for d in data.deals
        ]
        accepted = await container.bridges.deals(api_key(request), deals, request_context(request))
        return BatchAnswer(accepted=accepted)

    @post(
        "/positions", status_code=200, operation_id="bridgePositions", request_max_body_size=BATCH_MAX_BYTES
    )
    async def positions(self, container: ContainerDep, request: Req) -> BatchAnswer:
        data = await strict_body(request, PositionsRequest)
        positions = [
            Position(
                ticket=p.ticket,
                time=p.time,
                symbol=p.symbol,
                type=p.type,
                volume=p.volume,
                price_open=p.price_open,
                price_current=p.price_current,
                sl=p.sl,
                tp=p.tp,
                profit=p.profit,
                swap=p.swap,
                magic=p.magic,
            )
            for p in data.positions
        ]
        accepted = await container.bridges.positions(api_key(request), positions, request_context(request))
        return BatchAnswer(accepted=accepted)

    @get("/commands", operation_id="bridgeCommands")
    async def commands(
        self, container: ContainerDep, request: Req, after: Annotated[int, Parameter(ge=0, le=2**63 - 1)] = 0
    ) -> CommandList:
        taken = await container.bridges.poll_commands(api_key(request), after, request_context(request))
        views = [CommandView(c.id, c.seq, c.kind, dict(c.payload), c.expires_at) for c in taken]
        return CommandList(commands=views, cursor=max([after, *(c.seq for c in taken)]))

    @post("/commands/{command_id:uuid}/ack", status_code=204, operation_id="bridgeAckCommand")
    async def ack(self, command_id: FromPath[UUID], container: ContainerDep, request: Req) -> None:
        await container.bridges.ack_command(api_key(request), command_id, request_context(request))


class BridgeAuthzController(Controller):
    path = "/api/v1/authz"
    tags = ["authorization"]

    @post("/bridge", status_code=200, operation_id="authzBridge")
    async def bridge(self, container: ContainerDep, request: Req) -> BridgeAuthzAnswer:
        bridge = await container.bridges.describe(api_key(request), request_context(request))
        account = BridgeAuthzAccount(bridge.account.login, bridge.account.server) if bridge.account else None
        shown = bridge.shown_status(container.clock.now(), container.bridges.policy.offline_after)
        return BridgeAuthzAnswer(
            bridge_id=bridge.id, org_id=bridge.org_id, account=account, status=str(shown)
        )
