"""Request and response bodies of the identity API (snake_case JSON). Write bodies refuse
unknown fields so a typo is a 400, not a silently ignored setting."""

from datetime import datetime
from uuid import UUID

import msgspec


class WriteBody(msgspec.Struct, forbid_unknown_fields=True):
    pass


class RegisterRequest(WriteBody):
    email: str
    password: str
    display_name: str


class UpdateMeRequest(WriteBody):
    display_name: str


class TokenRequest(WriteBody):
    token: str


class EmailRequest(WriteBody):
    email: str


class LoginRequest(WriteBody):
    email: str
    password: str


class ChangePasswordRequest(WriteBody):
    current_password: str
    new_password: str


class ResetPasswordRequest(WriteBody):
    token: str
    new_password: str


class StatusResponse(msgspec.Struct):
    status: str


class UserView(msgspec.Struct):
    id: UUID
    email: str
    display_name: str
    platform_role: str
    email_verified: bool
    created_at: datetime


class TokenResponse(msgspec.Struct):
    access_token: str
    token_type: str
    expires_in: int
    user: UserView


class OrgView(msgspec.Struct):
    id: UUID
    name: str
    personal: bool
    status: str


class MembershipView(msgspec.Struct):
    org: OrgView
    role: str


class MeResponse(msgspec.Struct):
    user: UserView
    current_org: OrgView
    platform_role: str
    memberships: list[MembershipView]


class SessionView(msgspec.Struct):
    id: UUID
    created_at: datetime
    last_used_at: datetime
    ip: str | None
    user_agent: str | None
    current: bool


class SessionsResponse(msgspec.Struct):
    sessions: list[SessionView]


class Jwk(msgspec.Struct):
    kty: str
    crv: str
    x: str
    kid: str
    use: str
    alg: str


class JwksResponse(msgspec.Struct):
    keys: list[Jwk]


class CloseAccountRequest(WriteBody):
    password: str
    code: str | None = None  # when two-factor authentication is on
