"""Settings from `BULWARK_*` environment variables (and an optional `.env`), validated at start-up.

Every setting is declared once here with its default and description; the README's configuration
table is printed from this list by `bulwark config`, so the two cannot drift apart."""

import ipaddress
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from domain.egress_pool import EgressPool, EgressPoolError, parse_egress_pool
from domain.plans import PlanCatalog, PlanCatalogError
from domain.platform_admins import ADMIN_AUDIENCE

PREFIX = "BULWARK_"


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable and what it expected."""


def _doc(description: str, production: str = "") -> dict[str, str]:
    return {"description": description, "production": production}


@dataclass(frozen=True)
class Settings:
    env: str = field(
        default="development",
        metadata=_doc(
            "`development` or `production`. Production refuses unsafe configuration.",
            "`production`",
        ),
    )
    host: str = field(default="127.0.0.1", metadata=_doc("Address to listen on."))
    port: int = field(default=8000, metadata=_doc("Port to listen on."))
    workers: int = field(
        default=2, metadata=_doc("ASGI worker processes (granian). Embedded mode always runs one.")
    )
    data_dir: Path = field(
        default=Path("data"),
        metadata=_doc("Where embedded mode keeps its SQLite database, generated keys and dev outbox."),
    )
    database_url: str = field(
        default="",
        metadata=_doc(
            "SQLAlchemy async URL, e.g. `postgresql+asyncpg://user@host/db`. "
            "Empty: SQLite file in the data dir.",
            "PostgreSQL required",
        ),
    )
    database_pool_size: int = field(
        default=20,
        metadata=_doc(
            "PostgreSQL connections each worker keeps open. As many again open for a burst and close "
            "after it; opening one costs far more than a refresh, so size it to the requests a worker "
            "runs at once."
        ),
    )
    redis_url: str = field(
        default="",
        metadata=_doc(
            "Redis URL for rate limits and revocation. Empty: in-process stores (one worker only).",
            "required",
        ),
    )
    keys_file: Path | None = field(
        default=None,
        metadata=_doc(
            "Keyring JSON (master keys, peppers, signing keys) mounted from a secret store; "
            "create one with `bulwark keys init`. Empty: generated development keys in the data dir.",
            "required",
        ),
    )
    frontend_url: str = field(
        default="http://localhost:5173", metadata=_doc("The SPA's base URL, used in mailed links.")
    )
    allowed_origins: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "Comma-separated origins allowed by CORS and the origin check. Empty: the frontend URL's origin.",
            "no `*`",
        ),
    )
    trusted_proxies: tuple[str, ...] = field(
        default=(),
        metadata=_doc("Comma-separated IPs/CIDRs of reverse proxies whose `X-Forwarded-For` is honoured."),
    )
    admin_allowed_networks: tuple[str, ...] | None = field(
        default=None,
        metadata=_doc(
            "Comma-separated CIDRs whose clients reach the admin panel (`/api/admin/v1/`); everyone "
            "else gets the unknown-route 404. Unset: `127.0.0.0/8,::1/128` in development, none in "
            "production. Set but empty: the panel is off.",
            "unset: panel off",
        ),
    )
    smtp_host: str = field(
        default="",
        metadata=_doc(
            "When set, mail goes over SMTP (any mode). Empty: mail is logged and kept in the outbox.",
            "required",
        ),
    )
    smtp_port: int = field(default=587, metadata=_doc("SMTP port."))
    smtp_username: str = field(default="", metadata=_doc("SMTP user name (optional)."))
    smtp_password: str = field(default="", metadata=_doc("SMTP password (optional)."))
    smtp_starttls: bool = field(default=True, metadata=_doc("Use STARTTLS for SMTP."))
    mail_from: str = field(default="Bulwark <no-reply@localhost>", metadata=_doc("Sender of every mail."))
    max_body_bytes: int = field(
        default=65536, metadata=_doc("Largest request body accepted; larger bodies get 413.")
    )
    request_timeout_seconds: float = field(
        default=10.0, metadata=_doc("A request still running after this answers 503.")
    )
    log_level: str = field(default="INFO", metadata=_doc("Log level."))
    log_json: bool | None = field(
        default=None, metadata=_doc("JSON log lines. Empty: on in production, off in development.")
    )
    jwt_issuer: str = field(default="bulwark", metadata=_doc("`iss` of access tokens."))
    jwt_audience: str = field(default="bulwark-api", metadata=_doc("`aud` of access tokens."))
    access_token_ttl_seconds: int = field(default=900, metadata=_doc("Access token lifetime."))

    argon2_time_cost: int = field(default=3, metadata=_doc("argon2id iterations (floor 2)."))
    argon2_memory_kib: int = field(
        default=46 * 1024, metadata=_doc("argon2id memory per hash in KiB (floor 19456).")
    )
    argon2_threads: int = field(
        default=0,
        metadata=_doc(
            "Password hashes in flight per worker. 0: the machine's cores shared out among the workers."
        ),
    )
    argon2_parallelism: int = field(default=1, metadata=_doc("argon2id lanes (floor 1)."))
    argon2_nice: int = field(
        default=5,
        metadata=_doc(
            "How many nice levels below the worker the password-hashing threads run (0-19; 0: the same)."
        ),
    )
    password_min_length: int = field(
        default=15, metadata=_doc("Shortest password accepted, in code points (never below 8).")
    )
    session_idle_seconds: int = field(default=7 * 86400, metadata=_doc("A session unused this long ends."))
    session_absolute_seconds: int = field(
        default=30 * 86400, metadata=_doc("A session ends this long after login, used or not.")
    )
    refresh_grace_seconds: float = field(
        default=10.0,
        metadata=_doc(
            "A refresh token rotated less than this ago returns the same successor (parallel tabs)."
        ),
    )
    verify_email_ttl_seconds: int = field(
        default=86400, metadata=_doc("Lifetime of email verification links.")
    )
    reset_password_ttl_seconds: int = field(default=1800, metadata=_doc("Lifetime of password reset links."))
    login_limit_per_ip: str = field(
        default="30/300",
        metadata=_doc(
            "Login attempts per client IP, as `count/seconds` "
            "(comma-separated tiers allowed, each window once)."
        ),
    )
    login_limit_per_account: str = field(
        default="5/60,20/3600",
        metadata=_doc("Login attempts per account: tiers give a growing, always temporary delay."),
    )
    register_limit_per_ip: str = field(default="10/3600", metadata=_doc("Registrations per IP."))
    mail_limit_per_ip: str = field(
        default="10/3600", metadata=_doc("Forgot-password and resend-verification requests per IP.")
    )
    mail_limit_per_address: str = field(
        default="3/3600", metadata=_doc("Forgot-password and resend-verification requests per email address.")
    )

    totp_issuer: str = field(default="Bulwark", metadata=_doc("Issuer shown in authenticator apps."))
    stepup_window_seconds: int = field(
        default=600,
        metadata=_doc("Sensitive actions need a password (and code) given at most this long ago."),
    )
    mfa_token_ttl_seconds: int = field(
        default=300, metadata=_doc("Lifetime of the login step between password and second factor.")
    )
    mfa_limit_per_user: str = field(
        default="10/300", metadata=_doc("Second-factor attempts per user (apart from password attempts).")
    )
    mfa_limit_per_ip: str = field(default="30/300", metadata=_doc("Second-factor attempts per IP."))

    admin_session_idle_seconds: int = field(
        default=1800, metadata=_doc("An admin session unused this long ends.")
    )
    admin_session_absolute_seconds: int = field(
        default=8 * 3600, metadata=_doc("An admin session ends this long after admin login, used or not.")
    )
    admin_login_limit_per_account: str = field(
        default="5/900",
        metadata=_doc(
            "Admin login attempts per account, as `count/seconds` tiers; using one up with a "
            "failure locks the account (BULWARK_ADMIN_LOCKOUT_SECONDS)."
        ),
    )
    admin_login_limit_per_ip: str = field(
        default="20/900", metadata=_doc("Admin login attempts per client IP, as `count/seconds` tiers.")
    )
    admin_lockout_seconds: str = field(
        default="900,3600,14400,86400",
        metadata=_doc(
            "How long successive admin account locks last (the last repeats); a good login or "
            "`bulwark admin unlock` starts again from the first."
        ),
    )
    plans: str = field(
        default="free,pro,desk",
        metadata=_doc(
            "Comma-separated plan names a platform administrator may put an account on; must "
            "include `free` (every new account's plan)."
        ),
    )
    paying_plans: str = field(
        default="pro,desk",
        metadata=_doc("Comma-separated plans that are paid for: a subset of BULWARK_PLANS, never `free`."),
    )

    bridge_key_overlap_seconds: int = field(
        default=600, metadata=_doc("After a bridge key is rotated, the old key keeps working this long.")
    )
    bridge_offline_after_seconds: int = field(
        default=90,
        metadata=_doc("A bridge with no heartbeat for this long shows offline (three 30 s intervals)."),
    )
    jobs_interval_seconds: float = field(
        default=60.0,
        metadata=_doc(
            "How often each worker resumes unfinished background work (account closures stopped "
            "half-way); `bulwark jobs run` does the same once. 0: only the command."
        ),
    )
    housekeeping_interval_seconds: float = field(
        default=0.0,
        metadata=_doc(
            "How often each worker purges dead sessions and spent one-time tokens and checks the "
            "rate limiter's keys. 0: only `bulwark jobs run` (from a timer) does it."
        ),
    )
    housekeeping_retention_days: float = field(
        default=30.0,
        metadata=_doc(
            "How long a revoked or expired session, and an expired one-time token, is kept before "
            "housekeeping deletes it (at least 1 day)."
        ),
    )
    housekeeping_batch_size: int = field(
        default=500,
        metadata=_doc(
            "Rows housekeeping deletes per transaction (a session counts with its refresh tokens)."
        ),
    )
    audit_seal_interval_seconds: float = field(
        default=1.0,
        metadata=_doc(
            "How often each worker chains newly committed audit entries into the hash chain (the "
            "sealer; an entry waits about this long, longer behind a transaction still open). "
            "0: only `bulwark jobs run` and verification seal."
        ),
    )
    audit_partitions_ahead_months: int = field(
        default=3,
        metadata=_doc(
            "PostgreSQL: monthly audit-log partitions kept created ahead of time (by each worker's "
            "jobs, every BULWARK_JOBS_INTERVAL_SECONDS, and by `bulwark jobs run`)."
        ),
    )
    bridge_sightings_flush_seconds: float = field(
        default=1.0,
        metadata=_doc(
            "Bridges' last-seen marks are written in one batch this often (per worker); "
            "a heartbeat does not wait for it."
        ),
    )
    bridge_command_ttl_seconds: int = field(
        default=60, metadata=_doc("A command queued for a bridge and not picked up by then is dropped.")
    )
    bridge_limit_per_key: str = field(
        default="120/60", metadata=_doc("Bridge API requests per bridge key, as `count/seconds` tiers.")
    )
    bridge_limit_per_ip: str = field(
        default="600/60", metadata=_doc("Bridge API requests per client IP, as `count/seconds` tiers.")
    )
    vault_keys_file: Path | None = field(
        default=None,
        metadata=_doc(
            "The credential vault's key file (opening keys, service-token keys); only "
            "`bulwark vault serve` reads it. Create it with `bulwark keys init --vault`. Empty: "
            "`bulwark serve` runs the vault in-process with generated keys in the data dir.",
            "required for the vault; refused by `serve`",
        ),
    )
    vault_host: str = field(default="127.0.0.1", metadata=_doc("Address the credential vault listens on."))
    vault_port: int = field(default=8001, metadata=_doc("Port the credential vault listens on."))
    vault_refresh_margin_seconds: int = field(
        default=7 * 86400,
        metadata=_doc("The vault refreshes a broker access token this long before it expires."),
    )
    vault_access_limit_per_client: str = field(
        default="20000/60", metadata=_doc("Credential accesses per service client, as `count/seconds` tiers.")
    )
    service_client_secret_overlap_seconds: int = field(
        default=3600,
        metadata=_doc(
            "After `bulwark service-clients rotate-secret`, the old secret keeps working this long."
        ),
    )
    # --- the egress gateway (Squid + `bulwark egress squid-helper`) -------------------------
    egress_credential_ttl_seconds: int = field(
        default=300,
        metadata=_doc(
            "Life of the egress proxy credential the vault hands out with broker credentials "
            "(60-3600 s). It names one user and one address."
        ),
    )
    egress_broker_targets: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "Comma-separated `host:port` list of broker endpoints the egress gateway lets CONNECT "
            "reach (`bulwark egress render-squid`); everything else is denied.",
            "required on the egress host",
        ),
    )
    egress_squid_listen: str = field(
        default="127.0.0.1:3128",
        metadata=_doc(
            "`address:port` Squid listens on for workers (rendered into squid.conf). Production: "
            "not a public address."
        ),
    )
    egress_squid_credentials_ttl_seconds: int = field(
        default=5,
        metadata=_doc(
            "How long Squid may reuse a helper's answer (`credentialsttl`); at most the credential's "
            "life. A detach is confirmed only after this long, so no cached answer outlives it."
        ),
    )
    egress_squid_manager_url: str = field(
        default="",
        metadata=_doc(
            "Squid's cache manager on the egress host, e.g. `http://127.0.0.1:3129/squid-internal-mgr/` "
            "(its own loopback port): the gateway's open tunnels, and detach confirmation. Empty: no "
            "gateway is configured, so teardowns wait in `draining`.",
            "required",
        ),
    )
    egress_helper_children: int = field(
        default=4,
        metadata=_doc("Squid helper processes (`auth_param basic children`), 64 logins each at once."),
    )
    egress_helper_pool_size: int = field(
        default=4, metadata=_doc("PostgreSQL connections each Squid helper process keeps for ledger reads.")
    )
    egress_cut_tunnels: bool = field(
        default=True,
        metadata=_doc(
            "A detach cuts the address's open tunnels with `ss -K` (needs CAP_NET_ADMIN on the "
            "egress host). Off: a detach waits until they have ended."
        ),
    )
    egress_verify_keys_file: Path | None = field(
        default=None,
        metadata=_doc(
            "Public keys the Squid helper checks egress credentials with "
            "(`bulwark egress verify-keys`). Empty: the development vault key file's.",
            "required on the egress host",
        ),
    )
    ctrader_client_id: str = field(
        default="", metadata=_doc("cTrader Open API application id. Empty: cTrader is off (404).")
    )
    ctrader_client_secret: str = field(
        default="",
        metadata=_doc(
            "cTrader application secret (development only; production reads "
            "`provider_secrets.ctrader_client_secret` from the keyring and the vault key file).",
            "refused",
        ),
    )
    ctrader_redirect_uri: str = field(
        default="",
        metadata=_doc(
            "The redirect URI registered with cTrader. Empty: "
            "`http://{BULWARK_HOST}:{BULWARK_PORT}/api/v1/broker-connections/ctrader/callback`."
        ),
    )
    ctrader_auth_url: str = field(
        default="https://openapi.ctrader.com/apps/auth", metadata=_doc("cTrader's consent page.")
    )
    ctrader_token_url: str = field(
        default="https://openapi.ctrader.com/apps/token", metadata=_doc("cTrader's token endpoint.")
    )
    ctrader_api_url: str = field(
        default="wss://live.ctraderapi.com:5036", metadata=_doc("cTrader Open API JSON WebSocket (live).")
    )
    ctrader_demo_api_url: str = field(
        default="wss://demo.ctraderapi.com:5036", metadata=_doc("cTrader Open API JSON WebSocket (demo).")
    )
    ctrader_revoke_url: str = field(
        default="https://id.ctrader.com/my/settings/openapi/grantedaccesses",
        metadata=_doc("Where users revoke the app in cTrader (shown after a connection is deleted)."),
    )
    egress_provider: str = field(
        default="static",
        metadata=_doc(
            "Where dedicated egress IPv4 addresses come from: `static` (the operator's routed block "
            "in BULWARK_EGRESS_POOL) or `hetzner` (Hetzner Cloud Primary IPs, created on demand)."
        ),
    )
    egress_pool: str = field(
        default="",
        metadata=_doc(
            "The static provider's addresses: comma-separated IPv4 CIDR blocks and single addresses, "
            "e.g. `203.0.113.0/28,198.51.100.7`. A block of /30 or larger leaves out its network and "
            "broadcast addresses; at most 4096 addresses. Empty: no address to give (paying users wait "
            "`egress_pending`).",
            "globally routable only",
        ),
    )
    egress_hetzner_api_url: str = field(
        default="https://api.hetzner.cloud/v1",
        metadata=_doc(
            "Hetzner Cloud API base URL (the hetzner provider). Its token is the keyring's "
            "`provider_secrets.hetzner_api_token` (`bulwark keys set-secret hetzner_api_token`).",
            "https",
        ),
    )
    egress_hetzner_server_id: int = field(
        default=0,
        metadata=_doc(
            "Id of the Hetzner Cloud server that is the egress host: Primary IPs are assigned to it. "
            "0: unset (required by the hetzner provider)."
        ),
    )
    egress_hetzner_datacenter: str = field(
        default="",
        metadata=_doc(
            "Datacenter new Primary IPs are created in, the egress host's (e.g. `fsn1-dc14`); "
            "required by the hetzner provider."
        ),
    )
    egress_downgrade_grace: str = field(
        default="7d",
        metadata=_doc(
            "After a user leaves a paying plan they keep their dedicated egress address this long "
            "(re-upgrading inside keeps the same address), then its teardown starts. A duration: "
            "`7d`, `12h`, `30m` or seconds."
        ),
    )
    egress_cooldown: str = field(
        default="7d",
        metadata=_doc(
            "A torn-down address of a fixed pool (static) rests this long before another user gets "
            "it, so nobody inherits a broker-side association. A billing provider's (hetzner) is "
            "deleted there right after the detach instead. Production: at least "
            "BULWARK_EGRESS_CREDENTIAL_TTL_SECONDS."
        ),
    )
    egress_stuck_after: str = field(
        default="6h",
        metadata=_doc(
            "The egress audit reports a teardown that has not moved for this long (a detach the "
            "gateway never confirms, a release the provider never confirms)."
        ),
    )
    egress_paused_stale_after: str = field(
        default="30d",
        metadata=_doc("The egress audit reports the address of an account paused longer than this as stale."),
    )

    sso_google_client_id: str = field(
        default="", metadata=_doc("Google OAuth client id (sign-in with Google). Empty: Google is off (404).")
    )
    sso_google_client_secret: str = field(
        default="",
        metadata=_doc(
            "Google OAuth client secret (development only; production reads "
            "`provider_secrets.sso_google_client_secret` from the keyring).",
            "refused",
        ),
    )
    sso_google_issuer: str = field(
        default="https://accounts.google.com",
        metadata=_doc("Google's issuer (overridable for tests; plain http:// only outside production)."),
    )
    sso_azure_client_id: str = field(
        default="",
        metadata=_doc("Azure AD / Entra ID application (client) id. Empty: Microsoft sign-in is off (404)."),
    )
    sso_azure_client_secret: str = field(
        default="",
        metadata=_doc(
            "Azure application client secret (development only; production reads "
            "`provider_secrets.sso_azure_client_secret` from the keyring).",
            "refused",
        ),
    )
    sso_azure_tenant: str = field(
        default="organizations",
        metadata=_doc(
            "Azure tenant: a tenant id (one organisation), `organizations` or `common` (multi-tenant: "
            "each token's issuer is checked against its own `tid`)."
        ),
    )
    sso_azure_authority: str = field(
        default="https://login.microsoftonline.com",
        metadata=_doc("Azure's authority (sovereign clouds, tests; plain http:// only outside production)."),
    )
    sso_oidc_issuer: str = field(
        default="",
        metadata=_doc("Issuer URL of a generic OpenID provider (enterprise IdPs); discovery is read there."),
    )
    sso_oidc_client_id: str = field(
        default="", metadata=_doc("Client id at the generic OpenID provider. Empty: it is off (404).")
    )
    sso_oidc_client_secret: str = field(
        default="",
        metadata=_doc(
            "Client secret at the generic OpenID provider (development only; production reads "
            "`provider_secrets.sso_oidc_client_secret` from the keyring).",
            "refused",
        ),
    )
    sso_oidc_name: str = field(
        default="Single sign-on", metadata=_doc("Display name of the generic OpenID provider.")
    )
    sso_redirect_base_url: str = field(
        default="",
        metadata=_doc(
            "Public base URL of this API as the providers' redirect URIs name it "
            "(`{base}/api/v1/auth/sso/{provider}/callback`). Empty: `http://{BULWARK_HOST}:{BULWARK_PORT}`.",
            "required (https) when a provider is on",
        ),
    )

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def sso_providers_on(self) -> tuple[str, ...]:
        """A provider is on when its client id is set."""
        ids = {
            "google": self.sso_google_client_id,
            "azure": self.sso_azure_client_id,
            "oidc": self.sso_oidc_client_id,
        }
        return tuple(name for name, client_id in ids.items() if client_id)

    @property
    def effective_sso_redirect_base_url(self) -> str:
        return (self.sso_redirect_base_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def effective_ctrader_redirect_uri(self) -> str:
        if self.ctrader_redirect_uri:
            return self.ctrader_redirect_uri
        return f"http://{self.host}:{self.port}/api/v1/broker-connections/ctrader/callback"

    @property
    def egress_pool_addresses(self) -> EgressPool:
        """BULWARK_EGRESS_POOL parsed; validate() has already refused a bad one."""
        return parse_egress_pool(self.egress_pool, production=self.is_production)

    @property
    def in_process_vault(self) -> bool:
        """Development without a vault key file: `serve` runs the vault too. Never in production."""
        return self.vault_keys_file is None and not self.is_production

    @property
    def embedded_database(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'bulwark.sqlite3').resolve()}"

    @property
    def effective_allowed_origins(self) -> tuple[str, ...]:
        if self.allowed_origins:
            # Browsers send origins lower-case and without a path; compare in that form.
            return tuple(o if o == "*" else origin_of(o) for o in self.allowed_origins)
        return (origin_of(self.frontend_url),)

    @property
    def plan_catalog(self) -> PlanCatalog:
        return PlanCatalog.parse(self.plans, self.paying_plans)

    @property
    def effective_admin_allowed_networks(self) -> tuple[str, ...]:
        if self.admin_allowed_networks is not None:
            return self.admin_allowed_networks
        # Only someone on the machine itself reaches a developer's panel; production opts in.
        return () if self.is_production else DEVELOPMENT_ADMIN_NETWORKS

    @property
    def effective_log_json(self) -> bool:
        return self.is_production if self.log_json is None else self.log_json

    @property
    def effective_workers(self) -> int:
        # In-process limiter and revocation stores are per process: more workers would split them.
        return 1 if not self.redis_url else self.workers


DEVELOPMENT_ADMIN_NETWORKS = ("127.0.0.0/8", "::1/128")


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def env_name(name: str) -> str:
    return PREFIX + name.upper()


def _parse(name: str, raw: str, annotation: Any) -> Any:
    var = env_name(name)
    text = raw.strip()
    kind = str(annotation)
    try:
        if annotation is int or kind == "int":
            return int(text)
        if annotation is float or kind == "float":
            number = float(text)
            if not math.isfinite(number):  # "nan"/"inf" would slip past every range check
                raise ValueError
            return number
        if annotation is bool or kind in ("bool", "bool | None"):
            if text == "" and "None" in kind:
                return None
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if annotation is Path or kind.startswith("pathlib.Path") or kind.startswith("Path"):
            if not text and "None" not in kind:
                raise ValueError  # an empty data dir is not "no data dir"
            return Path(text) if text else None
        if kind.startswith("tuple"):
            return tuple(item.strip() for item in text.split(",") if item.strip())
        return text
    except ValueError:
        expected = {
            "int": "a whole number",
            "float": "a number",
            "bool": "true or false",
            "bool | None": "true, false or empty",
            "Path": "a non-empty path",
        }.get(getattr(annotation, "__name__", kind), kind.replace(" | None", " or empty"))
        raise SettingsError(f"{var}={raw!r} is not valid: expected {expected}") from None


def read_dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def load_settings(
    environ: dict[str, str] | None = None, dotenv: Path | None = None, *, egress_host: bool = False
) -> Settings:
    """Real environment wins over `.env`; unknown BULWARK_ variables are an error (typos).
    `egress_host`: for the commands of the egress host (the Squid helper, render-squid), which
    need the ledger and the public verify keys only, never the keyring, Redis or SMTP."""
    source = dict(read_dotenv(dotenv if dotenv is not None else Path(".env")))
    source.update(environ if environ is not None else os.environ)
    known = {env_name(f.name): f for f in fields(Settings)}
    unknown = sorted(
        k for k in source if k.startswith(PREFIX) and k not in known and not k.startswith(PREFIX + "TEST_")
    )
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]}; see `bulwark config` for the list")
    values: dict[str, Any] = {}
    for var, f in known.items():
        if var in source:
            values[f.name] = _parse(f.name, source[var], f.type)
    settings = Settings(**values)
    validate(settings, egress_host=egress_host)
    return settings


def validate(settings: Settings, *, egress_host: bool = False) -> None:
    if settings.env not in ("development", "production"):
        raise SettingsError(f"BULWARK_ENV={settings.env!r} is not valid: expected development or production")
    if not 0 < settings.port < 65536:
        raise SettingsError(f"BULWARK_PORT={settings.port} is not valid: expected 1-65535")
    if settings.workers < 1:
        raise SettingsError("BULWARK_WORKERS must be at least 1")
    if settings.database_pool_size < 1:
        raise SettingsError("BULWARK_DATABASE_POOL_SIZE must be at least 1")
    if settings.max_body_bytes < 1024:
        raise SettingsError("BULWARK_MAX_BODY_BYTES must be at least 1024")
    if settings.request_timeout_seconds <= 0:
        raise SettingsError("BULWARK_REQUEST_TIMEOUT_SECONDS must be positive")
    for origin in settings.allowed_origins:
        if origin != "*" and origin_of(origin) != origin.lower().rstrip("/"):
            raise SettingsError(
                f"BULWARK_ALLOWED_ORIGINS entry {origin!r} is not valid: expected scheme://host[:port]"
            )
    for name in (
        "login_limit_per_ip",
        "login_limit_per_account",
        "register_limit_per_ip",
        "mail_limit_per_ip",
        "mail_limit_per_address",
        "mfa_limit_per_user",
        "mfa_limit_per_ip",
        "admin_login_limit_per_account",
        "admin_login_limit_per_ip",
    ):
        parse_limits(name, getattr(settings, name))
    parse_durations("admin_lockout_seconds", settings.admin_lockout_seconds)
    try:
        PlanCatalog.parse(settings.plans, settings.paying_plans)
    except PlanCatalogError as error:
        raise SettingsError(f"BULWARK_PLANS / BULWARK_PAYING_PLANS are not valid: {error}") from None
    if settings.admin_session_idle_seconds < 60 or settings.admin_session_absolute_seconds < 60:
        raise SettingsError("BULWARK_ADMIN_SESSION_IDLE_SECONDS and _ABSOLUTE_SECONDS must be at least 60")
    if settings.jwt_audience == ADMIN_AUDIENCE:
        # One audience for both would let a user token pass as an admin token's audience.
        raise SettingsError(f"BULWARK_JWT_AUDIENCE must not be {ADMIN_AUDIENCE!r}: admin tokens use it")
    if settings.password_min_length < 8:
        raise SettingsError("BULWARK_PASSWORD_MIN_LENGTH must be at least 8 (NIST SP 800-63B)")
    if settings.argon2_time_cost < 2 or settings.argon2_memory_kib < 19456 or settings.argon2_parallelism < 1:
        raise SettingsError("BULWARK_ARGON2_* are below OWASP's floor (t=2, m=19456 KiB, p=1)")
    if not 0 <= settings.argon2_nice <= 19:
        raise SettingsError(f"BULWARK_ARGON2_NICE={settings.argon2_nice} is not valid: expected 0-19")
    url = settings.effective_database_url
    if not (url.startswith("sqlite+aiosqlite://") or url.startswith("postgresql+asyncpg://")):
        raise SettingsError(
            "BULWARK_DATABASE_URL is not valid: expected postgresql+asyncpg://... or sqlite+aiosqlite://..."
        )
    if settings.redis_url and not settings.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError("BULWARK_REDIS_URL is not valid: expected redis://, rediss:// or unix://")
    if not 1 <= settings.vault_port <= 65535:
        raise SettingsError(f"BULWARK_VAULT_PORT={settings.vault_port} is not valid: expected 1-65535")
    for entry in settings.effective_admin_allowed_networks:
        _check_admin_network(entry)
    parse_limits("vault_access_limit_per_client", settings.vault_access_limit_per_client)
    parse_limits("bridge_limit_per_key", settings.bridge_limit_per_key)
    parse_limits("bridge_limit_per_ip", settings.bridge_limit_per_ip)
    if settings.jobs_interval_seconds < 0:
        raise SettingsError("BULWARK_JOBS_INTERVAL_SECONDS must be 0 (off) or more")
    if settings.housekeeping_interval_seconds < 0:
        raise SettingsError("BULWARK_HOUSEKEEPING_INTERVAL_SECONDS must be 0 (off) or more")
    # A revoked session must outlive every access token it issued: the revocation store reloads
    # the recently revoked ones from the database when Redis comes back empty.
    if settings.housekeeping_retention_days < 1:
        raise SettingsError("BULWARK_HOUSEKEEPING_RETENTION_DAYS must be at least 1")
    if not 1 <= settings.housekeeping_batch_size <= 100_000:
        raise SettingsError("BULWARK_HOUSEKEEPING_BATCH_SIZE must be between 1 and 100000")
    if settings.audit_seal_interval_seconds < 0:
        raise SettingsError("BULWARK_AUDIT_SEAL_INTERVAL_SECONDS must be 0 (off) or more")
    if not 1 <= settings.audit_partitions_ahead_months <= 36:
        raise SettingsError("BULWARK_AUDIT_PARTITIONS_AHEAD_MONTHS must be between 1 and 36")
    if not 0 < settings.bridge_sightings_flush_seconds <= 60:
        raise SettingsError("BULWARK_BRIDGE_SIGHTINGS_FLUSH_SECONDS must be above 0 and at most 60")
    _check_ctrader_urls(settings)
    _check_egress_gateway(settings)
    _check_egress(settings)
    for name in (
        "egress_downgrade_grace",
        "egress_cooldown",
        "egress_stuck_after",
        "egress_paused_stale_after",
    ):
        parse_duration(name, getattr(settings, name))
    _check_sso(settings)
    if settings.is_production:
        check_production(settings, egress_host=egress_host)


def _check_admin_network(entry: str) -> None:
    var = env_name("admin_allowed_networks")
    try:
        # strict: "10.0.0.7/8" is more likely a typo than a wish to allow all of 10/8.
        ipaddress.ip_network(entry, strict=True)
    except ValueError as error:
        raise SettingsError(
            f"{var} entry {entry!r} is not valid: expected an IP address or a CIDR network such as "
            f"10.0.0.0/8 ({error})"
        ) from None


_CTRADER_URLS = {
    "ctrader_auth_url": ("https",),
    "ctrader_token_url": ("https",),
    "ctrader_redirect_uri": ("https",),
    "ctrader_api_url": ("wss",),
    "ctrader_demo_api_url": ("wss",),
}
_PLAIN = {"https": "http", "wss": "ws"}


def _check_ctrader_urls(settings: Settings) -> None:
    """TLS everywhere in production; plain http/ws only for a simulator on a developer's machine."""
    for name, (secure,) in _CTRADER_URLS.items():
        value = getattr(settings, name)
        if not value:
            continue
        parts = urlsplit(value)
        allowed = {secure} if settings.is_production else {secure, _PLAIN[secure]}
        if parts.scheme not in allowed or not parts.hostname:
            raise SettingsError(
                f"{env_name(name)}={value!r} is not valid: expected {' or '.join(sorted(allowed))}://host..."
            )


def _check_egress_gateway(settings: Settings) -> None:
    if not 60 <= settings.egress_credential_ttl_seconds <= 3600:
        raise SettingsError("BULWARK_EGRESS_CREDENTIAL_TTL_SECONDS must be 60-3600")
    if not 1 <= settings.egress_squid_credentials_ttl_seconds <= settings.egress_credential_ttl_seconds:
        raise SettingsError(
            "BULWARK_EGRESS_SQUID_CREDENTIALS_TTL_SECONDS must be 1 s to the credential's life "
            "(BULWARK_EGRESS_CREDENTIAL_TTL_SECONDS): Squid must not admit a credential longer"
        )
    parse_host_port("egress_squid_listen", settings.egress_squid_listen)
    if settings.egress_helper_children < 1 or settings.egress_helper_pool_size < 1:
        raise SettingsError("BULWARK_EGRESS_HELPER_CHILDREN and _POOL_SIZE must be at least 1")
    if settings.egress_squid_manager_url:
        manager = urlsplit(settings.egress_squid_manager_url)
        if manager.scheme != "http" or manager.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SettingsError(
                "BULWARK_EGRESS_SQUID_MANAGER_URL must be http://127.0.0.1:PORT/squid-internal-mgr/ "
                "(the cache manager answers on loopback only)"
            )
    for target in settings.egress_broker_targets:
        parse_host_port("egress_broker_targets", target)


_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*")


def parse_host_port(name: str, text: str) -> tuple[str, int]:
    """`host:port` (an ASCII host name or an IPv4 address) -> (host, port). It is written into
    squid.conf, so nothing else passes: no IPv6 literal (the egress pool is IPv4, and an IPv6
    destination would leave from the host's shared address), no leading dot (Squid reads
    `.example.com` as every subdomain), no character Squid's parser would read as syntax."""
    host, sep, port = text.strip().rpartition(":")
    valid = bool(sep and host and port.isascii() and port.isdigit() and 0 < int(port) < 65536)
    if valid and not (_HOST_NAME.fullmatch(host) and not host.replace(".", "").isdigit()):
        valid = _is_ipv4(host)
    if not valid:
        raise SettingsError(
            f"{env_name(name)}={text!r} is not valid: expected host:port with an ASCII host name "
            "or an IPv4 address, e.g. live.ctraderapi.com:5035"
        )
    return host, int(port)


def _is_ipv4(text: str) -> bool:
    try:
        return str(ipaddress.IPv4Address(text)) == text
    except ValueError:
        return False


EGRESS_PROVIDERS = ("static", "hetzner")


def _check_egress(settings: Settings) -> None:
    if settings.egress_provider not in EGRESS_PROVIDERS:
        raise SettingsError(
            f"BULWARK_EGRESS_PROVIDER={settings.egress_provider!r} is not valid: expected static or hetzner"
        )
    try:
        settings.egress_pool_addresses  # noqa: B018 -- parsing is the check
    except EgressPoolError as error:
        raise SettingsError(f"BULWARK_EGRESS_POOL is not valid: {error}") from None
    if settings.egress_provider != "hetzner":
        return
    if settings.egress_pool.strip():
        # The pool would be ignored; say so rather than let the operator believe it is used.
        raise SettingsError(
            "BULWARK_EGRESS_POOL is for the static provider; the hetzner provider creates IPs"
        )
    if settings.egress_hetzner_server_id <= 0:
        raise SettingsError(
            "BULWARK_EGRESS_PROVIDER=hetzner needs BULWARK_EGRESS_HETZNER_SERVER_ID (the egress host's id)"
        )
    if not settings.egress_hetzner_datacenter.strip():
        raise SettingsError(
            "BULWARK_EGRESS_PROVIDER=hetzner needs BULWARK_EGRESS_HETZNER_DATACENTER (e.g. fsn1-dc14)"
        )
    parts = urlsplit(settings.egress_hetzner_api_url)
    allowed = {"https"} if settings.is_production else {"https", "http"}
    if parts.scheme not in allowed or not parts.hostname:
        # The API token travels in every request: plain http only for a simulator on a laptop.
        raise SettingsError(
            f"BULWARK_EGRESS_HETZNER_API_URL={settings.egress_hetzner_api_url!r} is not valid: "
            f"expected {' or '.join(sorted(allowed))}://host..."
        )


_SSO_URLS = ("sso_google_issuer", "sso_azure_authority", "sso_oidc_issuer", "sso_redirect_base_url")
_AZURE_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,99}")


def _check_sso(settings: Settings) -> None:
    """TLS for every provider in production; plain http:// only for a provider on a developer's
    machine or in tests."""
    allowed = {"https"} if settings.is_production else {"https", "http"}
    for name in _SSO_URLS:
        value = getattr(settings, name)
        if not value:
            continue
        parts = urlsplit(value)
        if parts.scheme not in allowed or not parts.hostname or parts.query or parts.fragment:
            raise SettingsError(
                f"{env_name(name)}={value!r} is not valid: expected {' or '.join(sorted(allowed))}://host..."
            )
    if settings.sso_azure_client_id and not _AZURE_TENANT.fullmatch(settings.sso_azure_tenant):
        raise SettingsError(
            f"BULWARK_SSO_AZURE_TENANT={settings.sso_azure_tenant!r} is not valid: expected a tenant id, "
            "organizations or common"
        )
    if settings.sso_oidc_client_id and not settings.sso_oidc_issuer:
        raise SettingsError("BULWARK_SSO_OIDC_CLIENT_ID needs BULWARK_SSO_OIDC_ISSUER")


def parse_limits(name: str, text: str) -> tuple[tuple[int, float], ...]:
    """`count/seconds[,count/seconds...]` -> ((count, seconds), ...)."""
    tiers: list[tuple[int, float]] = []
    for part in text.split(","):
        count, sep, seconds = part.strip().partition("/")
        try:
            tier = (int(count), float(seconds))
        except ValueError:
            tier = (0, 0.0)
        if not sep or tier[0] < 1 or tier[1] <= 0:
            raise SettingsError(f"{env_name(name)}={text!r} is not valid: expected count/seconds, e.g. 5/60")
        if any(window == tier[1] for _, window in tiers):
            # Both tiers would count in one limiter key: say which count is meant instead.
            raise SettingsError(
                f"{env_name(name)}={text!r} is not valid: the window of {tier[1]:g} s is given twice"
            )
        tiers.append(tier)
    return tuple(tiers)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(name: str, text: str) -> float:
    """`7d`, `12h`, `30m`, `45s` or plain seconds -> seconds (0 allowed: at once)."""
    raw = text.strip().lower()
    unit = _UNITS.get(raw[-1:], 0)
    try:
        seconds = float(raw[:-1] if unit else raw) * (unit or 1)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds < 0:
        raise SettingsError(
            f"{env_name(name)}={text!r} is not valid: expected a duration such as 7d, 12h or 900"
        )
    return seconds


def parse_durations(name: str, text: str) -> tuple[float, ...]:
    """`seconds[,seconds...]`, each positive and finite -> (seconds, ...)."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise SettingsError(f"{env_name(name)}={text!r} is not valid: expected seconds, e.g. 900,3600")
    return values


def check_production(settings: Settings, *, egress_host: bool = False) -> None:
    """Production refuses to start on anything that is only safe for a developer's laptop."""
    if settings.embedded_database:
        raise SettingsError(
            "production needs PostgreSQL: set BULWARK_DATABASE_URL (SQLite is for development)"
        )
    if egress_host:
        # The internet-facing proxy host needs no keyring, Redis nor SMTP: do not make it hold them.
        if settings.egress_verify_keys_file is None:
            raise SettingsError(
                "the egress host needs BULWARK_EGRESS_VERIFY_KEYS_FILE (`bulwark egress verify-keys`)"
            )
        return
    if not settings.redis_url:
        raise SettingsError(
            "production needs Redis: set BULWARK_REDIS_URL (in-process stores are for development)"
        )
    if settings.keys_file is None:
        raise SettingsError(
            "production needs real keys: set BULWARK_KEYS_FILE (generated keys are for development)"
        )
    if not settings.smtp_host:
        raise SettingsError("production needs SMTP: set BULWARK_SMTP_HOST (the dev outbox logs mail bodies)")
    if "*" in settings.effective_allowed_origins:
        raise SettingsError("production refuses BULWARK_ALLOWED_ORIGINS containing '*'")
    if settings.ctrader_client_secret:
        raise SettingsError(
            "production refuses BULWARK_CTRADER_CLIENT_SECRET in the environment: put it in the "
            "keyring's and the vault key file's provider_secrets (`bulwark keys set-secret`)"
        )
    for provider in ("google", "azure", "oidc"):
        if getattr(settings, f"sso_{provider}_client_secret"):
            raise SettingsError(
                f"production refuses BULWARK_SSO_{provider.upper()}_CLIENT_SECRET in the environment: put "
                f"it in the keyring (`bulwark keys set-secret sso_{provider}_client_secret`)"
            )
    if settings.sso_providers_on and not settings.sso_redirect_base_url:
        raise SettingsError(
            "production needs BULWARK_SSO_REDIRECT_BASE_URL (the https URL registered with the providers)"
        )
    listen_host, _ = parse_host_port("egress_squid_listen", settings.egress_squid_listen)
    if _is_ipv4(listen_host) and ipaddress.IPv4Address(listen_host).is_global:
        # Workers reach Squid over the internal network; a listener on the internet invites
        # every stranger to try logins.
        raise SettingsError(
            "production refuses BULWARK_EGRESS_SQUID_LISTEN on a public address: listen on the "
            "workers' private network"
        )
    if parse_duration("egress_cooldown", settings.egress_cooldown) < settings.egress_credential_ttl_seconds:
        # A torn-down address goes to its next holder only after every credential naming it
        # has expired (the helper refuses them anyway: this is the margin on top).
        raise SettingsError(
            "production refuses BULWARK_EGRESS_COOLDOWN shorter than BULWARK_EGRESS_CREDENTIAL_TTL_SECONDS"
        )
    if settings.ctrader_client_id and not settings.ctrader_redirect_uri:
        raise SettingsError(
            "production needs BULWARK_CTRADER_REDIRECT_URI (an https URL registered with cTrader)"
        )


def settings_table() -> str:
    """The README's configuration table."""
    rows = ["| variable | default | production | meaning |", "|---|---|---|---|"]
    for f in fields(Settings):
        default = f.default
        shown = "" if default in ("", None, ()) else str(default)
        rows.append(
            f"| `{env_name(f.name)}` | {f'`{shown}`' if shown else '(empty)'} | "
            f"{f.metadata.get('production', '')} | {f.metadata.get('description', '')} |"
        )
    return "\n".join(rows)
