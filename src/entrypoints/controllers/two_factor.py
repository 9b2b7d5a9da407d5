"""The signed-in user's TOTP second factor and recovery codes."""

from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.di import Provide
from litestar.params import JSONBody

from entrypoints.dto.two_factor import (
    CodeRequest,
    DisableTwoFactorRequest,
    PasswordRequest,
    RecoveryCodesResponse,
    TotpSetupResponse,
    TwoFactorStatusResponse,
)
from entrypoints.http.auth import provide_principal
from entrypoints.http.dependencies import ContainerDep, PrincipalDep
from entrypoints.http.request_context import request_context


class TwoFactorController(Controller):
    path = "/api/v1/me/2fa"
    tags = ["2fa"]
    dependencies = {"principal": Provide(provide_principal)}

    @get("", operation_id="getTwoFactorStatus")
    async def status(self, principal: PrincipalDep, container: ContainerDep) -> TwoFactorStatusResponse:
        status = await container.identity.two_factor_status(principal)
        return TwoFactorStatusResponse(
            enabled=status.enabled,
            confirmed_at=status.confirmed_at,
            recovery_codes_left=status.recovery_codes_left,
        )

    @post("/totp/setup", status_code=200, operation_id="setupTotp")
    async def setup(
        self,
        data: JSONBody[PasswordRequest],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Request[Any, Any, Any],
    ) -> TotpSetupResponse:
        enrolment = await container.identity.setup_totp(principal, data.password, request_context(request))
        return TotpSetupResponse(
            secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri, qr_svg=enrolment.qr_svg
        )

    @post("/totp/confirm", status_code=200, operation_id="confirmTotp")
    async def confirm(
        self,
        data: JSONBody[CodeRequest],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Request[Any, Any, Any],
    ) -> RecoveryCodesResponse:
        codes = await container.identity.confirm_totp(principal, data.code, request_context(request))
        return RecoveryCodesResponse(recovery_codes=codes)

    @post("/recovery-codes", status_code=200, operation_id="regenerateRecoveryCodes")
    async def regenerate(
        self,
        data: JSONBody[CodeRequest],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Request[Any, Any, Any],
    ) -> RecoveryCodesResponse:
        codes = await container.identity.regenerate_recovery_codes(
            principal, data.code, request_context(request)
        )
        return RecoveryCodesResponse(recovery_codes=codes)

    @delete("", status_code=204, operation_id="disableTwoFactor")
    async def disable(
        self,
        data: JSONBody[DisableTwoFactorRequest],
        principal: PrincipalDep,
        container: ContainerDep,
        request: Request[Any, Any, Any],
    ) -> None:
        await container.identity.disable_totp(
            principal, data.password, data.code, data.recovery_code, request_context(request)
        )
