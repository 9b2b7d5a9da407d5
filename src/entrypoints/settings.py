"""Settings from `BULWARK_*` environment variables (and an optional `.env`), validated at start-up.

Every setting is declared once here with its default and description; the README's configuration
table is printed from this list by `bulwark config`, so the two cannot drift apart."""

import ipaddress
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def effective_ctrader_redirect_uri(self) -> str:
        if self.ctrader_redirect_uri:
            return self.ctrader_redirect_uri
        return f"http://{self.host}:{self.port}/api/v1/broker-connections/ctrader/callback"

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


def load_settings(environ: dict[str, str] | None = None, dotenv: Path | None = None) -> Settings:
    """Real environment wins over `.env`; unknown BULWARK_ variables are an error (typos)."""
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
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
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
    if settings.audit_seal_interval_seconds < 0:
        raise SettingsError("BULWARK_AUDIT_SEAL_INTERVAL_SECONDS must be 0 (off) or more")
    if not 1 <= settings.audit_partitions_ahead_months <= 36:
        raise SettingsError("BULWARK_AUDIT_PARTITIONS_AHEAD_MONTHS must be between 1 and 36")
    if not 0 < settings.bridge_sightings_flush_seconds <= 60:
        raise SettingsError("BULWARK_BRIDGE_SIGHTINGS_FLUSH_SECONDS must be above 0 and at most 60")
    _check_ctrader_urls(settings)
    if settings.is_production:
        check_production(settings)


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


def parse_durations(name: str, text: str) -> tuple[float, ...]:
    """`seconds[,seconds...]`, each positive and finite -> (seconds, ...)."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise SettingsError(f"{env_name(name)}={text!r} is not valid: expected seconds, e.g. 900,3600")
    return values


def check_production(settings: Settings) -> None:
    """Production refuses to start on anything that is only safe for a developer's laptop."""
    if settings.embedded_database:
        raise SettingsError(
            "production needs PostgreSQL: set BULWARK_DATABASE_URL (SQLite is for development)"
        )
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
