"""cTrader adapters against the loopback simulator: real HTTP and WebSocket, lost and refused answers."""

from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from adapters.brokers.ctrader.account_list import WebsocketCtraderAccounts
from adapters.brokers.ctrader.oauth_client import HttpxCtraderOAuth
from application.ports.ctrader import (
    BrokerAccount,
    BrokerError,
    BrokerRefused,
    BrokerTokenInvalid,
    BrokerTokens,
    BrokerUnavailable,
)
from tests.ctrader_simulator import CtraderSimulator

CLIENT_ID = "1234_bulwarkTestApp"
CLIENT_SECRET = "sEcReT-0f-the-app-9f8e7d"
REDIRECT = "https://app.bulwark.test/brokers/ctrader/callback"


@pytest.fixture
async def sim() -> AsyncIterator[CtraderSimulator]:
    async with CtraderSimulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as simulator:
        yield simulator


def _oauth(sim: CtraderSimulator, *, secret: str = CLIENT_SECRET, timeout: float = 5.0) -> HttpxCtraderOAuth:
    return HttpxCtraderOAuth(
        client_id=CLIENT_ID,
        client_secret=secret,
        redirect_uri=REDIRECT,
        auth_url=sim.auth_url,
        token_url=sim.token_url,
        timeout_seconds=timeout,
    )


@pytest.fixture
async def oauth(sim: CtraderSimulator) -> AsyncIterator[HttpxCtraderOAuth]:
    adapter = _oauth(sim)
    yield adapter
    await adapter.close()


@pytest.fixture
def accounts(sim: CtraderSimulator) -> WebsocketCtraderAccounts:
    return WebsocketCtraderAccounts(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, api_url=sim.ws_url, timeout_seconds=2.0
    )


def _assert_clean(error: BaseException, sim: CtraderSimulator) -> None:
    """No secret in the message, the repr or the chained exceptions."""
    seen: BaseException | None = error
    while seen is not None:
        text = f"{seen} {seen!r}"
        assert CLIENT_SECRET not in text
        for token in sim.issued_tokens:
            assert token not in text
        for code in sim._codes:
            assert code not in text
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)


async def _tokens(sim: CtraderSimulator, oauth: HttpxCtraderOAuth) -> BrokerTokens:
    return await oauth.exchange_code(sim.issue_code(redirect_uri=REDIRECT))


# --- authorization URL and consent -----------------------------------------------------------------


async def test_authorization_url_and_consent_redirect_with_code_and_state(
    sim: CtraderSimulator, oauth: HttpxCtraderOAuth
) -> None:
    url = oauth.authorization_url(state="st-42", scope="trading")
    query = parse_qs(urlsplit(url).query)
    assert query == {
        "client_id": [CLIENT_ID],
        "redirect_uri": [REDIRECT],
        "scope": ["trading"],
        "state": ["st-42"],
    }
    async with httpx.AsyncClient(follow_redirects=False) as browser:
        answer = await browser.get(url)
    assert answer.status_code == 302
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    back = parse_qs(location.query)
    assert back["state"] == ["st-42"]
    tokens = await oauth.exchange_code(back["code"][0])
    assert tokens.token_type == "bearer"
    assert tokens.expires_in == sim.expires_in


async def test_authorization_url_keeps_an_existing_query(sim: CtraderSimulator) -> None:
    adapter = HttpxCtraderOAuth(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri=REDIRECT,
        auth_url=f"{sim.auth_url}?product=web",
        token_url=sim.token_url,
    )
    try:
        query = parse_qs(urlsplit(adapter.authorization_url(state="s", scope="accounts")).query)
        assert query["product"] == ["web"]
        assert query["scope"] == ["accounts"]
    finally:
        await adapter.close()


async def test_denied_consent_redirects_with_access_denied(
    sim: CtraderSimulator, oauth: HttpxCtraderOAuth
) -> None:
    sim.consent = "deny"
    async with httpx.AsyncClient(follow_redirects=False) as browser:
        answer = await browser.get(oauth.authorization_url(state="st-7", scope="trading"))
    assert answer.status_code == 302
    back = parse_qs(urlsplit(answer.headers["location"]).query)
    assert back == {"error": ["access_denied"], "state": ["st-7"]}


async def test_unknown_client_gets_a_400_page(sim: CtraderSimulator) -> None:
    async with httpx.AsyncClient(follow_redirects=False) as browser:
        answer = await browser.get(
            sim.auth_url, params={"client_id": "nope", "redirect_uri": REDIRECT, "scope": "x", "state": "s"}
        )
    assert answer.status_code == 400


# --- code exchange ---------------------------------------------------------------------------------


async def test_code_exchange_returns_live_tokens(sim: CtraderSimulator, oauth: HttpxCtraderOAuth) -> None:
    tokens = await _tokens(sim, oauth)
    assert tokens.access_token in sim.issued_tokens
    assert tokens.refresh_token in sim.issued_tokens
    assert sim.is_access_token_live(tokens.access_token)
    assert tokens.access_token not in repr(tokens)


async def test_reused_code_is_refused_under_http_200(sim: CtraderSimulator, oauth: HttpxCtraderOAuth) -> None:
    code = sim.issue_code(redirect_uri=REDIRECT)
    await oauth.exchange_code(code)
    with pytest.raises(BrokerRefused) as caught:
        await oauth.exchange_code(code)
    assert not isinstance(caught.value, BrokerTokenInvalid)
    assert caught.value.error_code == "ACCESS_DENIED"
    _assert_clean(caught.value, sim)
    # The error body really came with HTTP 200 (that is what the adapter must read through).
    async with httpx.AsyncClient() as raw:
        answer = await raw.get(
            sim.token_url,
            params={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            },
        )
    assert answer.status_code == 200
    assert answer.json()["errorCode"] == "ACCESS_DENIED"


async def test_expired_code_is_refused(sim: CtraderSimulator, oauth: HttpxCtraderOAuth) -> None:
    code = sim.issue_code(redirect_uri=REDIRECT)
    sim.advance(61)
    with pytest.raises(BrokerRefused) as caught:
        await oauth.exchange_code(code)
    assert caught.value.error_code == "ACCESS_DENIED"
    _assert_clean(caught.value, sim)


async def test_code_for_another_redirect_uri_is_refused(
    sim: CtraderSimulator, oauth: HttpxCtraderOAuth
) -> None:
    code = sim.issue_code(redirect_uri="https://evil.test/cb")
    with pytest.raises(BrokerRefused) as caught:
        await oauth.exchange_code(code)
    assert caught.value.error_code == "INVALID_REQUEST"


async def test_wrong_client_secret_is_refused(sim: CtraderSimulator) -> None:
    wrong = _oauth(sim, secret="not-the-secret-123")
    try:
        with pytest.raises(BrokerRefused) as caught:
            await wrong.exchange_code(sim.issue_code(redirect_uri=REDIRECT))
    finally:
        await wrong.close()
    assert caught.value.error_code == "ACCESS_DENIED"
    assert "not-the-secret-123" not in str(caught.value)
    _assert_clean(caught.value, sim)


# --- refresh ---------------------------------------------------------------------------------------


async def test_refresh_rotates_and_the_old_refresh_token_is_refused(
    sim: CtraderSimulator, oauth: HttpxCtraderOAuth
) -> None:
    first = await _tokens(sim, oauth)
    second = await oauth.refresh(first.refresh_token)
    assert second.access_token != first.access_token
    assert second.refresh_token != first.refresh_token
    assert not sim.is_access_token_live(first.access_token)
    assert sim.is_access_token_live(second.access_token)
    with pytest.raises(BrokerTokenInvalid) as caught:
        await oauth.refresh(first.refresh_token)
    _assert_clean(caught.value, sim)
    assert sim.refresh_spent(first.refresh_token) == 1
    assert sim.refresh_calls[first.refresh_token] == 2


async def test_dropped_refresh_answer_is_unavailable_but_the_token_rotated(
    sim: CtraderSimulator, oauth: HttpxCtraderOAuth
) -> None:
    first = await _tokens(sim, oauth)
    sim.drop_next_token_answers = 1
    with pytest.raises(BrokerUnavailable) as caught:
        await oauth.refresh(first.refresh_token)
    _assert_clean(caught.value, sim)
    assert sim.refresh_spent(first.refresh_token) == 1
    assert not sim.is_refresh_token_live(first.refresh_token)
    with pytest.raises(BrokerTokenInvalid):
        await oauth.refresh(first.refresh_token)


async def test_http_500_is_unavailable_and_nothing_rotated(
    sim: CtraderSimulator, oauth: HttpxCtraderOAuth
) -> None:
    first = await _tokens(sim, oauth)
    sim.token_http_500 = 1
    with pytest.raises(BrokerUnavailable) as caught:
        await oauth.refresh(first.refresh_token)
    _assert_clean(caught.value, sim)
    assert sim.refresh_spent(first.refresh_token) == 0
    assert (await oauth.refresh(first.refresh_token)).refresh_token != first.refresh_token


async def test_slow_answer_beyond_the_timeout_is_unavailable(sim: CtraderSimulator) -> None:
    impatient = _oauth(sim, timeout=0.3)
    try:
        code = sim.issue_code(redirect_uri=REDIRECT)
        sim.token_delay = 1.0
        with pytest.raises(BrokerUnavailable) as caught:
            await impatient.exchange_code(code)
    finally:
        await impatient.close()
    _assert_clean(caught.value, sim)


async def test_unreachable_token_endpoint_is_unavailable(sim: CtraderSimulator) -> None:
    gone = HttpxCtraderOAuth(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri=REDIRECT,
        auth_url=sim.auth_url,
        token_url="http://127.0.0.1:9/apps/token",
        timeout_seconds=2,
    )
    try:
        with pytest.raises(BrokerUnavailable) as caught:
            await gone.refresh("some-refresh-token-value")
    finally:
        await gone.close()
    assert "some-refresh-token-value" not in str(caught.value)
    assert CLIENT_SECRET not in str(caught.value)


async def test_httpx_request_log_hides_the_secret(
    sim: CtraderSimulator, oauth: HttpxCtraderOAuth, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    tokens = await _tokens(sim, oauth)
    await oauth.refresh(tokens.refresh_token)
    # Our side only (the simulator's own server log shows what it received, as a server would).
    ours = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("websockets"))
    assert "HTTP Request" in ours
    assert CLIENT_SECRET not in ours
    assert tokens.refresh_token not in ours


# --- account list ----------------------------------------------------------------------------------


async def test_account_list(
    sim: CtraderSimulator, oauth: HttpxCtraderOAuth, accounts: WebsocketCtraderAccounts
) -> None:
    tokens = await _tokens(sim, oauth)
    listed = await accounts.list_accounts(tokens.access_token)
    assert listed == [
        BrokerAccount(ctid_trader_account_id=40001, is_live=True, trader_login=7001, broker="IC Markets"),
        BrokerAccount(ctid_trader_account_id=40002, is_live=False, trader_login=7002, broker="IC Markets"),
    ]
    # Heartbeats came before each answer and were skipped.
    assert sim.stats.ws_messages == [2100, 2149]


async def test_revoked_user_gets_token_invalid(
    sim: CtraderSimulator, oauth: HttpxCtraderOAuth, accounts: WebsocketCtraderAccounts
) -> None:
    tokens = await _tokens(sim, oauth)
    sim.revoke_user()
    with pytest.raises(BrokerTokenInvalid) as caught:
        await accounts.list_accounts(tokens.access_token)
    assert caught.value.error_code == "CH_ACCESS_TOKEN_INVALID"
    _assert_clean(caught.value, sim)
    with pytest.raises(BrokerTokenInvalid):
        await oauth.refresh(tokens.refresh_token)


async def test_rotated_access_token_is_dead(
    sim: CtraderSimulator, oauth: HttpxCtraderOAuth, accounts: WebsocketCtraderAccounts
) -> None:
    first = await _tokens(sim, oauth)
    await oauth.refresh(first.refresh_token)
    with pytest.raises(BrokerTokenInvalid):
        await accounts.list_accounts(first.access_token)


async def test_wrong_app_credentials_on_the_websocket_are_refused(sim: CtraderSimulator) -> None:
    wrong = WebsocketCtraderAccounts(
        client_id=CLIENT_ID, client_secret="bad-secret-xyz", api_url=sim.ws_url, timeout_seconds=2
    )
    with pytest.raises(BrokerRefused) as caught:
        await wrong.list_accounts("whatever-token")
    assert not isinstance(caught.value, BrokerTokenInvalid)
    assert caught.value.error_code == "CH_CLIENT_AUTH_FAILURE"


async def test_ws_drop_is_unavailable(
    sim: CtraderSimulator, oauth: HttpxCtraderOAuth, accounts: WebsocketCtraderAccounts
) -> None:
    tokens = await _tokens(sim, oauth)
    sim.ws_drop = True
    with pytest.raises(BrokerUnavailable) as caught:
        await accounts.list_accounts(tokens.access_token)
    _assert_clean(caught.value, sim)


async def test_ws_delay_beyond_the_timeout_is_unavailable(
    sim: CtraderSimulator, oauth: HttpxCtraderOAuth
) -> None:
    tokens = await _tokens(sim, oauth)
    sim.ws_delay = 1.0
    impatient = WebsocketCtraderAccounts(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, api_url=sim.ws_url, timeout_seconds=0.3
    )
    with pytest.raises(BrokerUnavailable):
        await impatient.list_accounts(tokens.access_token)


async def test_ws_unreachable_is_unavailable() -> None:
    adapter = WebsocketCtraderAccounts(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, api_url="ws://127.0.0.1:9", timeout_seconds=2
    )
    with pytest.raises(BrokerUnavailable):
        await adapter.list_accounts("token")


@pytest.mark.parametrize("error", [BrokerRefused, BrokerTokenInvalid, BrokerUnavailable])
def test_errors_share_a_base(error: type[BrokerError]) -> None:
    assert issubclass(error, BrokerError)
