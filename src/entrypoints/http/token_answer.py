"""The 200 answer of login, refresh and the other calls that hand out tokens: body and cookie."""

from application.ports.token_issuer import IssuedToken
from domain.users import User
from entrypoints.composition import Container
from entrypoints.controllers.identity_views import user_view
from entrypoints.dto.identity import TokenResponse
from entrypoints.http.cookies import refresh_cookie_header, refresh_cookie_name


def token_body(access: IssuedToken, user: User) -> TokenResponse:
    return TokenResponse(
        access_token=access.token,
        token_type="Bearer",  # noqa: S106
        expires_in=access.expires_in,
        user=user_view(user),
    )


def refresh_cookie_value(container: Container, refresh_token: str) -> str:
    """The Set-Cookie header that hands the browser its (rotated) refresh token."""
    settings = container.settings
    return refresh_cookie_header(
        refresh_cookie_name(settings.is_production), refresh_token, settings.session_absolute_seconds
    )
