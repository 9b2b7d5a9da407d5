"""Bodies of the two-factor endpoints."""

from datetime import datetime

import msgspec

from entrypoints.dto.identity import WriteBody


class PasswordRequest(WriteBody):
    password: str


class CodeRequest(WriteBody):
    code: str


class MfaLoginRequest(WriteBody):
    mfa_token: str
    code: str | None = None
    recovery_code: str | None = None


class DisableTwoFactorRequest(WriteBody):
    password: str
    code: str | None = None
    recovery_code: str | None = None


class ReauthRequest(WriteBody):
    password: str
    code: str | None = None


class MfaRequiredResponse(msgspec.Struct):
    mfa_required: bool
    mfa_token: str
    methods: list[str]


class TotpSetupResponse(msgspec.Struct):
    secret: str
    otpauth_uri: str
    qr_svg: str


class RecoveryCodesResponse(msgspec.Struct):
    recovery_codes: list[str]


class TwoFactorStatusResponse(msgspec.Struct):
    enabled: bool
    confirmed_at: datetime | None
    recovery_codes_left: int


class AccessTokenResponse(msgspec.Struct):
    access_token: str
    token_type: str
    expires_in: int
