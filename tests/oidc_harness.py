"""A real OpenID provider for the SSO tests: the npm package `oidc-provider` (8.8.1, the certified
Node.js provider, pinned by tests/oidc_provider/package-lock.json) run on loopback by
tests/oidc_provider/server.mjs. One Node process per test session serves three issuers:

    profile  issuer                      claims (scope)
    google   {base}/google               sub; email, email_verified (email); name... (profile)
    oidc     {base}/oidc                 sub; email, email_verified (email); name, preferred_username
    azure    {base}/azure/{tid}/v2.0     sub, tid, ver (openid); email, xms_edov (email);
             (authority {base}/azure)    oid, preferred_username, name (profile); NO email_verified
    all                                  amr, acr (openid) from the user's `amr`/`acr`

Each issuer has its own discovery document ({issuer}/.well-known/openid-configuration) and JWKS.
The Azure-like profile follows Entra ID v2.0 multi-tenant discovery: `{authority}/{tenant}/v2.0/
.well-known/openid-configuration` for a tenant id publishes issuer `{authority}/{tid}/v2.0`; for
`common` and `organizations` it publishes the template `{authority}/{tenantid}/v2.0` (literally), and
every id_token's `iss` is `{authority}/{tid}/v2.0` with the user's real `tid`. Point Bulwark at it with
BULWARK_SSO_AZURE_AUTHORITY=provider.azure_authority and BULWARK_SSO_AZURE_TENANT=common, organizations
or a tenant id (AZURE_TENANT is the default `tid`). A user of another tenant is refused at a
tenant-specific authority (as Entra ID does); the Azure profile does not send the RFC 9207 `iss`
authorization-response parameter (Entra ID does not), google and oidc do (and advertise it).

Protocol: authorization code only, PKCE S256 REQUIRED (a request without it gets an error page),
nonce echoed, state echoed, client_secret_basic (default) or client_secret_post, static clients
registered by the test with its redirect URIs (Bulwark's: {base}/api/v1/auth/sso/{provider}/callback).
Claims go into the id_token (like Google and Entra ID), filtered by the granted scopes. Every
authorization request asks for a fresh login (no silent SSO from an earlier flow), so one httpx
client can sign in as different users in turn; consent is asked once per user and client.

Fixture API (tests/conftest.py registers this module with pytest_plugins: just ask for the fixture):
    provider = oidc_provider                       # OidcProvider, session-scoped, one Node process
    provider = clean_oidc_provider                 # the same, reset_all() after each test
    provider.issuer("google") / .discovery_url("azure", tenant="common") / .azure_authority
    client = provider.add_client("google", [callback_url], auth_method="client_secret_post")
    user = provider.add_user("azure", email="a@x.test", xms_edov=True, tid=..., oid=..., amr=["pwd", "mfa"])
    callback = drive_login(httpx.Client(), authorize_url, login=user.login, password=user.password)
    callback = await drive_login_async(httpx.AsyncClient(), authorize_url, login=..., password=...)
    provider.rotate_keys("google", keep_old=False)  -> {"signing_kid", "previous_kid", "kids"}
    provider.tamper_next_id_token("google", mode, value=None)  # modes below; next token response only
    provider.tamper_next_authorization_iss("google", value=None); provider.reset("google")
    authorization_request(discovery, client) / token_request(...)(httpx.Client())  # a minimal RP

drive_login needs its OWN httpx client for the provider (Bulwark's e2e client is an ASGI transport
that cannot reach other hosts); it returns the absolute URL of the redirect to the relying party
(the callback, with code, state and, for google/oidc, iss) without requesting it. Users, clients,
queued tampering and keys persist for the session: give each test its own client_id and users.

Forms (fixed field names, for anyone driving them by hand): GET /interaction/{profile}/{uid} shows
either `<form id="login">` POSTing `login` and `password` to /interaction/{profile}/{uid}/login, or
`<form id="consent">` POSTing nothing to .../confirm; `<form id="abort">` (.../abort) answers the
relying party with error=access_denied. A wrong password re-renders the login form with
`<p id="error">`.

Control endpoints (JSON, loopback only, test-only: the server binds 127.0.0.1 and refuses others):
    GET  /_control/health                      readiness
    GET  /_control/{profile}                   issuer, discovery_url, kids, signing_kid, clients, users
    POST /_control/{profile}/clients           {client_id, client_secret?, redirect_uris,
                                                token_endpoint_auth_method?}
    POST /_control/{profile}/users             {login?, password?, sub?, claims: {...}, amr?: [...], acr?}
    POST /_control/{profile}/rotate            {keep_old: bool}: a new RSA key (new kid) signs from now
                                               on; the old one stays in the JWKS only with keep_old
    POST /_control/{profile}/tamper            {mode, value?}: the NEXT token response's id_token is
                                               rewritten and re-signed with the issuer's current key
                                               (a valid signature, so only the claim check can catch it)
    POST /_control/{profile}/reset             drops queued tampering
Tamper modes (one-shot, queued in order): `aud` (aud and azp = value or "another-client"), `nonce`
(a foreign nonce), `expired` (iat 2 h ago, exp value-or-3600 s ago), `issuer` (iss = value or another
profile's issuer: mix-up), `foreign_key` (unchanged claims signed by a key the issuer never published,
under a fresh kid), `claims` (merge the dict `value` into the payload, after the Azure iss: e.g.
{"tid": OTHER_AZURE_TENANT, "iss": provider.azure_issuer(OTHER_AZURE_TENANT)} is a token of another
tenant, {"tid": OTHER_AZURE_TENANT} alone a tid that contradicts iss), and `authz_iss` (via
tamper_next_authorization_iss: the next authorization response carries `iss` = value or another
issuer). `aud` with value=another registered client's id is a token genuinely meant for that client.
Implementation: a Koa middleware (`provider.use`) after oidc-provider's token endpoint
rewrites the id_token with jose; the Azure profile's per-tid `iss` is done the same way.

Keys and clients are oidc-provider configuration, so rotating or adding a client rebuilds that
profile's Provider instance; sessions, grants and codes live in the shared in-memory adapter and
survive. The Node process binds port 0 itself (no race between picking and binding a port) and
reports its base URL on its first stdout line. `npm ci` runs once when node_modules is missing or
stale (a stamp of the lockfile's hash), under a file lock. Missing node/npm: the tests skip with the
reason; under CI=true that is a failure."""

import fcntl
import hashlib
import json
import os
import secrets
import select
import shutil
import subprocess
import tempfile
import time
from base64 import urlsafe_b64encode
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx
import pytest

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"
PROFILES = ("google", "oidc", "azure")
AZURE_TENANT = "11111111-1111-4111-8111-111111111111"
OTHER_AZURE_TENANT = "22222222-2222-4222-8222-222222222222"
IN_CI = os.environ.get("CI", "").lower() == "true"
STARTUP_SECONDS = 30.0
NPM_CI_SECONDS = 300.0
DEFAULT_PASSWORD = "correct horse"  # a test user's, on a loopback test provider
_STAMP = ".bulwark-lock-sha256"  # .ci/run writes it too, after its own npm ci
MIN_NODE_MAJOR = 18


class OidcProviderUnavailable(RuntimeError):
    """Node.js or npm is missing, or the provider did not start."""


class OidcLoginError(RuntimeError):
    """The provider refused the login or answered something drive_login does not understand."""


@dataclass(frozen=True)
class OidcClient:
    profile: str
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    token_endpoint_auth_method: str


@dataclass(frozen=True)
class OidcUser:
    profile: str
    login: str
    password: str
    sub: str
    claims: dict[str, Any]
    amr: list[str] | None = None


# --- npm ci, cached -----------------------------------------------------------------------------


def _lock_hash() -> str:
    return hashlib.sha256((PROVIDER_DIR / "package-lock.json").read_bytes()).hexdigest()


def _check_node() -> None:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise OidcProviderUnavailable(f"{tool} is not installed (needed for the oidc-provider harness)")
    version = subprocess.run(["node", "-v"], capture_output=True, text=True, check=False).stdout.strip()
    try:
        major = int(version.lstrip("v").split(".")[0])
    except ValueError:
        major = 0
    if major < MIN_NODE_MAJOR:
        raise OidcProviderUnavailable(
            f"node {version or '?'} is too old: oidc-provider 8 needs >= {MIN_NODE_MAJOR}"
        )


def ensure_node_modules() -> None:
    """`npm ci` from the committed lockfile unless node_modules already matches it."""
    _check_node()
    stamp = PROVIDER_DIR / "node_modules" / _STAMP
    wanted = _lock_hash()
    with open(PROVIDER_DIR / ".npm-ci.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two pytest runs in one worktree must not interleave npm ci
        if stamp.is_file() and stamp.read_text().strip() == wanted:
            return
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PROVIDER_DIR,
            capture_output=True,
            text=True,
            timeout=NPM_CI_SECONDS,
            check=False,
        )
        if done.returncode != 0:
            raise OidcProviderUnavailable(f"npm ci failed in {PROVIDER_DIR}: {done.stderr.strip()[-2000:]}")
        stamp.write_text(wanted)


# --- the handle ---------------------------------------------------------------------------------


@dataclass
class OidcProvider:
    """A running provider process; talk to it through these methods (they call /_control)."""

    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _http: httpx.Client = field(repr=False)

    @property
    def azure_authority(self) -> str:
        """The value for BULWARK_SSO_AZURE_AUTHORITY."""
        return f"{self.base_url}/azure"

    def azure_issuer(self, tid: str = AZURE_TENANT) -> str:
        return f"{self.azure_authority}/{tid}/v2.0"

    def issuer(self, profile: str) -> str:
        """The issuer (for azure: of the default tenant; see azure_issuer)."""
        return self.azure_issuer() if profile == "azure" else f"{self.base_url}/{_known(profile)}"

    def discovery_url(self, profile: str, tenant: str = AZURE_TENANT) -> str:
        base = self.azure_issuer(tenant) if profile == "azure" else self.issuer(profile)
        return f"{base}/.well-known/openid-configuration"

    def discovery(self, profile: str, tenant: str = AZURE_TENANT) -> dict[str, Any]:
        response = self._http.get(self.discovery_url(profile, tenant))
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def info(self, profile: str) -> dict[str, Any]:
        return self._control("GET", f"/{_known(profile)}")

    def add_client(
        self,
        profile: str,
        redirect_uris: list[str],
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        auth_method: str = "client_secret_basic",
    ) -> OidcClient:
        """Registers a static client (auth_method: client_secret_basic or client_secret_post)."""
        body = {
            "client_id": client_id or f"bulwark-{profile}-{secrets.token_hex(4)}",
            "client_secret": client_secret or secrets.token_urlsafe(24),
            "redirect_uris": redirect_uris,
            "token_endpoint_auth_method": auth_method,
        }
        made = self._control("POST", f"/{_known(profile)}/clients", body)
        return OidcClient(
            profile,
            made["client_id"],
            made["client_secret"],
            made["redirect_uris"],
            made["token_endpoint_auth_method"],
        )

    def add_user(
        self,
        profile: str,
        *,
        sub: str | None = None,
        login: str | None = None,
        password: str = DEFAULT_PASSWORD,
        amr: list[str] | None = None,
        acr: str | None = None,
        **claims: Any,
    ) -> OidcUser:
        """A user with exactly these claims (email, email_verified, tid, oid, xms_edov, name...).
        login defaults to the email, else the sub; for azure, tid defaults to AZURE_TENANT, oid to a
        fresh uuid and ver to "2.0". amr lands in the id_token's amr (e.g. ["pwd", "mfa"])."""
        body: dict[str, Any] = {"sub": sub or secrets.token_hex(8), "password": password, "claims": claims}
        if login is not None:
            body["login"] = login
        if amr is not None:
            body["amr"] = amr
        if acr is not None:
            body["acr"] = acr
        made = self._control("POST", f"/{_known(profile)}/users", body)
        return OidcUser(profile, made["login"], password, made["sub"], made["claims"], made["amr"])

    def rotate_keys(self, profile: str, *, keep_old: bool = False) -> dict[str, Any]:
        """A new signing key with a new kid; the old key leaves the JWKS unless keep_old."""
        return self._control("POST", f"/{_known(profile)}/rotate", {"keep_old": keep_old})

    def tamper_next_id_token(self, profile: str, mode: str, value: Any = None) -> None:
        """The next token response's id_token is tampered (see the module docstring for modes)."""
        self._control("POST", f"/{_known(profile)}/tamper", {"mode": mode, "value": value})

    def tamper_next_authorization_iss(self, profile: str, value: str | None = None) -> None:
        """The next authorization response carries this RFC 9207 `iss` (default: another issuer)."""
        self._control("POST", f"/{_known(profile)}/tamper", {"mode": "authz_iss", "value": value})

    def reset(self, profile: str) -> None:
        """Drops tampering still queued (call it in teardown of tests that queue some)."""
        self._control("POST", f"/{_known(profile)}/reset", {})

    def reset_all(self) -> None:
        for profile in PROFILES:
            self.reset(profile)

    def stop(self) -> None:
        self._http.close()
        if self.process.stdin is not None:
            self.process.stdin.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def _control(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self._http.request(method, f"{self.base_url}/_control{path}", json=body)
        if response.status_code != 200:
            raise RuntimeError(f"oidc control {method} {path}: {response.status_code} {response.text}")
        result: dict[str, Any] = response.json()
        return result


def _known(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; one of {PROFILES}")
    return profile


def start_oidc_provider() -> OidcProvider:
    """Starts the provider (npm ci first when needed) and waits until it answers."""
    ensure_node_modules()
    log = Path(tempfile.mkstemp(prefix="oidc-provider-", suffix=".log")[1])
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            ["node", str(PROVIDER_DIR / "server.mjs"), "0"],
            cwd=PROVIDER_DIR,
            stdin=subprocess.PIPE,  # the server exits when this closes: no orphan if pytest dies
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    assert process.stdout is not None
    deadline = time.monotonic() + STARTUP_SECONDS
    ready, _, _ = select.select([process.stdout], [], [], STARTUP_SECONDS)
    line = process.stdout.readline() if ready else b""  # one line, written once listening
    if not line:
        process.kill()
        process.wait(timeout=5)
        raise OidcProviderUnavailable(
            f"oidc-provider did not start ({process.returncode}): {log.read_text()[-2000:]}"
        )
    base_url = json.loads(line)["base_url"]
    handle = OidcProvider(base_url, process, log, httpx.Client(timeout=10))
    while True:
        try:
            handle._control("GET", "/health")
            return handle
        except (httpx.HTTPError, RuntimeError) as error:
            if time.monotonic() > deadline:
                handle.stop()
                raise OidcProviderUnavailable(f"oidc-provider not ready: {error}") from error
            time.sleep(0.05)


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[OidcProvider]:
    """One provider process for the whole session (skip without Node.js; fail under CI=true)."""
    try:
        handle = start_oidc_provider()
    except OidcProviderUnavailable as error:
        if IN_CI:
            pytest.fail(f"{error}; under CI=true a missing engine is a failure", pytrace=False)
        pytest.skip(str(error))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def clean_oidc_provider(oidc_provider: OidcProvider) -> Iterator[OidcProvider]:
    """The session's provider, with tampering a test queued but did not consume dropped afterwards
    (so a failing negative test cannot tamper with the next test's sign-in)."""
    yield oidc_provider
    oidc_provider.reset_all()


# --- driving the browser part with httpx --------------------------------------------------------


@dataclass
class _Form:
    id: str | None
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[_Form] = []
        self.error: str | None = None
        self.heading: str | None = None
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(
                _Form(attr.get("id"), attr.get("action", ""), attr.get("method", "get").lower())
            )
        elif tag == "input" and self.forms and attr.get("name"):
            self.forms[-1].fields[attr["name"]] = attr.get("value", "")
        elif (tag == "p" and attr.get("id") == "error") or tag == "h1":
            self._in = "error" if tag == "p" else "h1"

    def handle_data(self, data: str) -> None:
        if self._in == "error":
            self.error = (self.error or "") + data
        elif self._in == "h1":
            self.heading = (self.heading or "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag in ("p", "h1"):
            self._in = None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


@dataclass(frozen=True)
class _Request:
    method: str
    url: str
    data: dict[str, str] | None = None


_Step = Generator[_Request, httpx.Response, str]


def _walk(authorize_url: str, login: str, password: str, consent: bool, max_steps: int) -> _Step:
    """The browser's side as a generator: yields requests, receives responses, returns the URL of
    the redirect that leaves the provider (the relying party's callback)."""
    provider = _origin(authorize_url)
    response = yield _Request("GET", authorize_url)
    submitted_login = False
    for _ in range(max_steps):
        url = str(response.url)
        if response.is_redirect:
            target = urljoin(url, response.headers["location"])
            if _origin(target) != provider:
                return target
            response = yield _Request("GET", target)
            continue
        page = _FormParser()
        page.feed(response.text)
        forms = {form.id: form for form in page.forms}
        if response.status_code != 200 or not forms:
            raise OidcLoginError(
                f"provider answered {response.status_code} at {url}: {page.heading or response.text[:300]}"
            )
        if "login" in forms:
            if submitted_login:
                raise OidcLoginError(f"login refused: {page.error or 'login form shown again'}")
            submitted_login = True
            form, data = forms["login"], {"login": login, "password": password}
        elif "consent" in forms:
            form, data = (forms["consent"], {}) if consent else (forms["abort"], {})
        elif len(page.forms) == 1 and _origin(urljoin(url, page.forms[0].action)) == provider:
            # oidc-provider's self-submitting form (e.g. resuming after the signed-in user changed)
            form, data = page.forms[0], {}
        else:
            raise OidcLoginError(f"no login, consent or provider form at {url} (form_post is not supported)")
        method = "POST" if form.method == "post" else "GET"
        response = yield _Request(method, urljoin(url, form.action), {**form.fields, **data})
    raise OidcLoginError(f"more than {max_steps} steps without leaving the provider")


def _build(client: httpx.Client | httpx.AsyncClient, request: _Request) -> httpx.Request:
    # build_request, not a bare Request: it adds the client's cookies (the provider's session)
    if request.method == "GET":
        return client.build_request("GET", request.url, params=request.data)
    return client.build_request(request.method, request.url, data=request.data)


def drive_login(
    client: httpx.Client,
    authorize_url: str,
    *,
    login: str,
    password: str,
    consent: bool = True,
    max_steps: int = 12,
) -> str:
    """Follows the provider's redirects and forms from the authorization URL and returns the URL it
    redirects the browser to at the relying party (not requested). consent=False denies consent."""
    walk = _walk(authorize_url, login, password, consent, max_steps)
    request = next(walk)
    while True:
        built = _build(client, request)
        response = client.send(built, follow_redirects=False)
        response.read()
        try:
            request = walk.send(response)
        except StopIteration as done:
            result: str = done.value
            return result


async def drive_login_async(
    client: httpx.AsyncClient,
    authorize_url: str,
    *,
    login: str,
    password: str,
    consent: bool = True,
    max_steps: int = 12,
) -> str:
    """drive_login with an httpx.AsyncClient."""
    walk = _walk(authorize_url, login, password, consent, max_steps)
    request = next(walk)
    while True:
        built = _build(client, request)
        response = await client.send(built, follow_redirects=False)
        await response.aread()
        try:
            request = walk.send(response)
        except StopIteration as done:
            result: str = done.value
            return result


# --- a minimal relying party, for the harness's own tests and for hand-made requests ------------


@dataclass(frozen=True)
class AuthorizationRequest:
    url: str
    state: str
    nonce: str
    code_verifier: str


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    challenge = urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorization_request(
    discovery: dict[str, Any],
    client: OidcClient,
    *,
    scope: str = "openid email profile",
    redirect_uri: str | None = None,
    extra: dict[str, str] | None = None,
    pkce: bool = True,
) -> AuthorizationRequest:
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": redirect_uri or client.redirect_uris[0],
        "scope": scope,
        "state": state,
        "nonce": nonce,
        **({"code_challenge": challenge, "code_challenge_method": "S256"} if pkce else {}),
        **(extra or {}),
    }
    return AuthorizationRequest(
        f"{discovery['authorization_endpoint']}?{urlencode(params)}", state, nonce, verifier
    )


def token_request(
    discovery: dict[str, Any],
    client: OidcClient,
    code: str,
    code_verifier: str,
    redirect_uri: str | None = None,
) -> Callable[[httpx.Client], httpx.Response]:
    """The code exchange as the client's auth method wants it; call the result with an httpx.Client."""
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri or client.redirect_uris[0],
        "code_verifier": code_verifier,
    }
    auth: tuple[str, str] | None = None
    if client.token_endpoint_auth_method == "client_secret_post":
        data |= {"client_id": client.client_id, "client_secret": client.client_secret}
    else:
        auth = (client.client_id, client.client_secret)

    def send(http: httpx.Client) -> httpx.Response:
        return http.post(discovery["token_endpoint"], data=data, auth=auth)  # type: ignore[arg-type]

    return send
