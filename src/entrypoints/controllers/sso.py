"""Single sign-on on the public API: the start (a redirect to the provider), the browser's return
(always a 303 to the SPA; nothing secret in any URL), and the hand-over of the second-factor step
to the SPA when the account has TOTP."""

import logging
from typing import Any
from urllib.parse import urlencode

import msgspec
from litestar import Controller, Request, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath
from litestar.response.base import ASGIResponse

from application.errors import NotAuthenticated
from application.sso_ports import SsoCallbackFailed
from application.use_cases.sso_sign_in import SsoLinked, SsoMfaStep, SsoSignedIn
from domain.sso import SSO_STATE_TTL
from entrypoints.dto.two_factor import MfaRequiredResponse
from entrypoints.http.cookies import (
    SSO_FLOW_COOKIE,
    SSO_MFA_COOKIE,
    cleared_sso_flow_cookie_header,
    cleared_sso_mfa_cookie_header,
    refresh_cookie_in,
    sso_flow_cookie_header,
    sso_mfa_cookie_header,
)
from entrypoints.http.dependencies import ContainerDep
from entrypoints.http.request_context import request_context
from entrypoints.http.token_answer import refresh_cookie_value

log = logging.getLogger("bulwark.sso")

Req = Request[Any, Any, Any]
Provider = FromPath[str]
_NO_STORE = [("cache-control", "no-store"), ("referrer-policy", "no-referrer")]
FAILURE_PATH = "/login"
MFA_PATH = "/login/2fa"


def redirect(location: str, status: int, cookies: list[str]) -> ASGIResponse:
    headers = [("location", location), *_NO_STORE, *(("set-cookie", c) for c in cookies)]
    return ASGIResponse(status_code=status, headers=headers)


class SsoController(Controller):
    path = "/api/v1/auth/sso"
    tags = ["auth"]

    @get(
        "/{provider:str}/start",
        operation_id="ssoStart",
        status_code=302,
        summary="Redirect to the provider; `return_to` is a path on the frontend.",
    )
    async def start(self, provider: Provider, container: ContainerDep, request: Req) -> ASGIResponse:
        started = await container.sso.start(
            provider, request.query_params.get("return_to"), request_context(request)
        )
        ttl = int(SSO_STATE_TTL.total_seconds())
        return redirect(
            started.authorization_url, 302, [sso_flow_cookie_header(started.browser_binding, ttl)]
        )

    @get(
        "/{provider:str}/callback",
        operation_id="ssoCallback",
        status_code=303,
        summary="The redirect URI registered with the provider; always a 303 to the SPA.",
    )
    async def callback(self, provider: Provider, container: ContainerDep, request: Req) -> ASGIResponse:
        query = request.query_params
        frontend = container.settings.frontend_url.rstrip("/")
        cookies = [cleared_sso_flow_cookie_header()]
        try:
            outcome = await container.sso.complete(
                provider,
                code=query.get("code"),
                state=query.get("state"),
                error=query.get("error"),
                iss=query.get("iss"),
                browser_binding=refresh_cookie_in(request.scope["headers"], SSO_FLOW_COOKIE),
                ctx=request_context(request),
            )
        except SsoCallbackFailed as failed:
            log.info("sso callback refused: %s", failed.code)
            return redirect(f"{frontend}{FAILURE_PATH}?{urlencode({'error': failed.code})}", 303, cookies)
        if isinstance(outcome, SsoSignedIn):
            cookies.append(refresh_cookie_value(container, outcome.refresh_token))
            return redirect(f"{frontend}{outcome.return_to}", 303, cookies)
        if isinstance(outcome, SsoMfaStep):
            ttl = container.settings.mfa_token_ttl_seconds
            cookies.append(sso_mfa_cookie_header(outcome.mfa_token, ttl))
            query_text = urlencode({"sso": "1", "return_to": outcome.return_to})
            return redirect(f"{frontend}{MFA_PATH}?{query_text}", 303, cookies)
        assert isinstance(outcome, SsoLinked)
        return redirect(f"{frontend}{outcome.return_to}", 303, cookies)

    @post(
        "/mfa",
        status_code=200,
        operation_id="ssoMfaToken",
        responses={200: ResponseSpec(MfaRequiredResponse, description="The mfa_token, handed over once")},
        summary="After an SSO sign-in of a two-factor account: the mfa_token for POST /login/2fa.",
    )
    async def mfa_token(self, request: Req) -> ASGIResponse:
        raw = refresh_cookie_in(request.scope["headers"], SSO_MFA_COOKIE)
        if not raw:
            raise NotAuthenticated("No sign-in step is waiting.", code="invalid_mfa_token")
        body = MfaRequiredResponse(mfa_required=True, mfa_token=raw, methods=["totp", "recovery_code"])
        return ASGIResponse(
            body=msgspec.json.encode(body),
            status_code=200,
            media_type="application/json",
            headers=[*_NO_STORE, ("set-cookie", cleared_sso_mfa_cookie_header())],
        )
