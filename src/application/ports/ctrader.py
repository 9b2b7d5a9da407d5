"""cTrader Open API as the core sees it: the OAuth token endpoint and the account list.

Adapters map every transport problem to `BrokerUnavailable` (the outcome is unknown: a refresh may
have rotated the token at the broker) and every answer carrying `errorCode` to `BrokerRefused`
(the broker said no; nothing changed there)."""

import json
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class BrokerTokens:
    access_token: str
    refresh_token: str
    expires_in: int  # seconds, about 30 days
    token_type: str = "bearer"  # noqa: S105 - a token kind, not a secret

    def __repr__(self) -> str:
        # Never print a token (logs, tracebacks).
        return f"BrokerTokens(expires_in={self.expires_in}, token_type={self.token_type!r})"

    def plaintext(self) -> bytes:
        """What gets sealed: the two tokens, nothing else (the vault opens this form)."""
        return json.dumps({"access_token": self.access_token, "refresh_token": self.refresh_token}).encode()


@dataclass(frozen=True)
class BrokerAccount:
    ctid_trader_account_id: int
    is_live: bool
    trader_login: int | None
    broker: str  # brokerTitleShort


class BrokerError(Exception):
    """Base of what a broker adapter raises."""


class BrokerUnavailable(BrokerError):
    """No usable answer: refused connection, timeout, 5xx, dropped or malformed answer."""


class BrokerNotReached(BrokerUnavailable):
    """The request never reached the broker (connection refused, connect timeout): nothing changed
    there, so a refresh token sent in it is still unspent."""


class BrokerRefused(BrokerError):
    """The broker answered with an error (`errorCode`, `description`), even under HTTP 200."""

    def __init__(self, error_code: str, description: str = "") -> None:
        super().__init__(f"{error_code}: {description}" if description else error_code)
        self.error_code = error_code
        self.description = description


class BrokerTokenInvalid(BrokerRefused):
    """The access or refresh token is dead (e.g. `CH_ACCESS_TOKEN_INVALID`, a refused refresh
    token): the user revoked us in cTrader, or the token expired or was already spent."""


class CtraderOAuth(Protocol):
    def authorization_url(self, *, state: str, scope: str) -> str:
        """Where the browser goes to consent (client_id, redirect_uri, scope, state in the query)."""
        ...

    async def exchange_code(self, code: str) -> BrokerTokens:
        """grant_type=authorization_code. A refused code raises BrokerRefused."""
        ...

    async def refresh(self, refresh_token: str) -> BrokerTokens:
        """grant_type=refresh_token. The old refresh token dies when this succeeds at the broker,
        even if the answer is then lost (BrokerUnavailable). A refused one raises BrokerTokenInvalid."""
        ...


class CtraderAccounts(Protocol):
    async def list_accounts(self, access_token: str) -> list[BrokerAccount]:
        """ProtoOAApplicationAuthReq then ProtoOAGetAccountListByAccessTokenReq over the JSON
        WebSocket. CH_ACCESS_TOKEN_INVALID raises BrokerTokenInvalid."""
        ...
