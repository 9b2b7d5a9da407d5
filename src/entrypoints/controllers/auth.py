"""Public authentication endpoints of the SPA: register, verify, login, refresh, logout, reset."""

from typing import Any

from litestar import Controller, Request, Response, post
from litestar.di import Provide
from litestar.params import JSONBody

from application.errors import NotAuthenticated
from application.ports.token_issuer import IssuedToken
from application.use_cases.mfa_challenge import MfaRequired
from domain.users import User
from entrypoints.dto.identity import (
    EmailRequest,
    LoginRequest,
    RegisterRequest,
    ResetPasswordRequest,
    StatusResponse,
    TokenRequest,
    TokenResponse,
)
from entrypoints.dto.two_factor import (
    AccessTokenResponse,
    MfaLoginRequest,
    MfaRequiredResponse,
    ReauthRequest,
)
from entrypoints.http.auth import provide_optional_principal, provide_principal
from entrypoints.http.cookies import (
    AUTH_PATH,
    cleared_refresh_cookie_header,
    refresh_cookie_in,
    refresh_cookie_name,
)
from entrypoints.http.dependencies import ContainerDep, OptionalPrincipalDep, PrincipalDep
from entrypoints.http.fast_path import precomputed_failure
from entrypoints.http.request_context import request_context
from entrypoints.http.token_answer import refresh_cookie_value, token_body


def token_response(
    container: ContainerDep, access: IssuedToken, refresh_token: str, user: User
) -> Response[TokenResponse]:
    cookie = refresh_cookie_value(container, refresh_token)
    return Response(token_body(access, user), status_code=200, headers={"set-cookie": cookie})


class AuthController(Controller):
    path = AUTH_PATH
    tags = ["auth"]

    @post(
        "/register",
        status_code=202,
        operation_id="register",
        summary="Create an account; the same answer whether or not the address exists.",
    )
    async def register(
        self, data: JSONBody[RegisterRequest], request: Request[Any, Any, Any], container: ContainerDep
    ) -> StatusResponse:
        await container.identity.register(
            data.email, data.password, data.display_name, request_context(request)
        )
        return StatusResponse(status="verification_sent")

    @post("/verify-email", status_code=200, operation_id="verifyEmail")
    async def verify_email(
        self, data: JSONBody[TokenRequest], request: Request[Any, Any, Any], container: ContainerDep
    ) -> StatusResponse:
        await container.identity.verify_email(data.token, request_context(request))
        return StatusResponse(status="verified")

    @post("/verify-email/resend", status_code=202, operation_id="resendVerification")
    async def resend(
        self, data: JSONBody[EmailRequest], request: Request[Any, Any, Any], container: ContainerDep
    ) -> StatusResponse:
        await container.identity.resend_verification(data.email, request_context(request))
        return StatusResponse(status="accepted")

    @post(
        "/login",
        status_code=200,
        operation_id="login",
        summary="Password step; answers tokens, or an mfa_token when 2FA is on.",
    )
    async def login(
        self, data: JSONBody[LoginRequest], request: Request[Any, Any, Any], container: ContainerDep
    ) -> Response[TokenResponse | MfaRequiredResponse]:
        result = await container.identity.login(data.email, data.password, request_context(request))
        if isinstance(result, MfaRequired):
            body = MfaRequiredResponse(
                mfa_required=True, mfa_token=result.mfa_token, methods=list(result.methods)
            )
            return Response(body, status_code=200)
        return token_response(container, result.access, result.refresh_token, result.user)  # type: ignore[return-value]

    @post("/login/2fa", status_code=200, operation_id="loginSecondFactor")
    async def login_second_factor(
        self, data: JSONBody[MfaLoginRequest], request: Request[Any, Any, Any], container: ContainerDep
    ) -> Response[TokenResponse]:
        result = await container.identity.complete_mfa_login(
            data.mfa_token, data.code, data.recovery_code, request_context(request)
        )
        return token_response(container, result.access, result.refresh_token, result.user)

    @post(
        "/reauth",
        status_code=200,
        operation_id="reauthenticate",
        dependencies={"principal": Provide(provide_principal)},
    )
    async def reauth(
        self,
        data: JSONBody[ReauthRequest],
        principal: PrincipalDep,
        request: Request[Any, Any, Any],
        container: ContainerDep,
    ) -> AccessTokenResponse:
        access = await container.identity.reauthenticate(
            principal, data.password, data.code, request_context(request)
        )
        return AccessTokenResponse(
            access_token=access.token,
            token_type="Bearer",  # noqa: S106
            expires_in=access.expires_in,
        )

    @post("/refresh", status_code=200, operation_id="refresh")
    async def refresh(
        self, request: Request[Any, Any, Any], container: ContainerDep
    ) -> Response[TokenResponse]:
        failure = precomputed_failure(request.scope)  # type: ignore[arg-type]
        if failure is not None:
            raise failure  # RefreshFastPath already ran this refresh; its failure is answered here
        name = refresh_cookie_name(container.settings.is_production)
        raw = refresh_cookie_in(request.scope["headers"], name)
        if not raw:
            raise NotAuthenticated("No refresh cookie.", code="invalid_refresh_token")
        result = await container.identity.refresh(raw, request_context(request))
        return token_response(container, result.access, result.refresh_token, result.user)

    @post(
        "/logout",
        status_code=204,
        operation_id="logout",
        dependencies={"principal": Provide(provide_optional_principal)},
    )
    async def logout(
        self, request: Request[Any, Any, Any], container: ContainerDep, principal: OptionalPrincipalDep
    ) -> Response[None]:
        name = refresh_cookie_name(container.settings.is_production)
        raw = refresh_cookie_in(request.scope["headers"], name)
        if principal is None and not raw:
            raise NotAuthenticated("Send a bearer token or the refresh cookie.")
        await container.identity.logout(principal, raw, request_context(request))
        return Response(None, status_code=204, headers={"set-cookie": cleared_refresh_cookie_header(name)})

    @post("/password/forgot", status_code=202, operation_id="forgotPassword")
    async def forgot(
        self, data: JSONBody[EmailRequest], request: Request[Any, Any, Any], container: ContainerDep
    ) -> StatusResponse:
        await container.identity.forgot_password(data.email, request_context(request))
        return StatusResponse(status="accepted")

    @post("/password/reset", status_code=204, operation_id="resetPassword")
    async def reset(
        self, data: JSONBody[ResetPasswordRequest], request: Request[Any, Any, Any], container: ContainerDep
    ) -> None:
        await container.identity.reset_password(data.token, data.new_password, request_context(request))
