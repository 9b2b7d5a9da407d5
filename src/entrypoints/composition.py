"""The one composition root: builds every adapter from the settings and hands them to use cases.
Nothing else constructs adapters; tests call `build_container` with their own settings."""

import dataclasses
import functools
import hashlib
import hmac
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.authz.in_process import InProcessAuthzVersions
from adapters.authz.permission_cache import LayeredPermissionCache
from adapters.authz.redis_versions import RedisAuthzVersions
from adapters.bridges.in_process_presence import InProcessBridgePresence
from adapters.bridges.redis_presence import RedisBridgePresence
from adapters.brokers.ctrader.account_list import WebsocketCtraderAccounts
from adapters.brokers.ctrader.oauth_client import HttpxCtraderOAuth
from adapters.clock import SystemClock
from adapters.crypto.hpke_sealing import HpkeOpener, HpkeSealer, ReloadingHpkeOpener
from adapters.crypto.secret_box import EnvelopeSecretBox
from adapters.egress.credential_tokens import EdDsaEgressCredentialSigner, EdDsaEgressCredentialVerifier
from adapters.egress.hetzner.api_client import HetznerApiClient
from adapters.egress.hetzner.primary_ips import HetznerPrimaryIpProvider
from adapters.egress.host_addresses import IpRouteHostAddresses
from adapters.egress.squid_config import EgressSquidConfig, SquidLayout
from adapters.egress.squid_gateway import SquidEgressGateway
from adapters.egress.squid_manager import SquidManager
from adapters.egress.static_pool import StaticPoolProvider
from adapters.egress.tunnel_cutter import SsTunnelCutter
from adapters.health import DependencyProbe
from adapters.keys.egress_verify_keys import load_verify_keys, private_signing_keys, public_halves
from adapters.keys.keyring import Keyring, KeyringError, ensure_development_keyring, load_keyring
from adapters.keys.local_key_provider import LocalKeyProvider
from adapters.keys.vault_keys import (
    VaultKeys,
    ensure_development_vault_keys,
    load_vault_keys,
    looks_like_vault_keys,
)
from adapters.limiter.in_process import InProcessSlidingWindowLimiter
from adapters.limiter.redis_key_trim import RedisRateLimitKeys
from adapters.limiter.redis_sliding_window import RedisSlidingWindowLimiter
from adapters.mail.dev_outbox import DevOutboxMailer
from adapters.mail.smtp_mailer import SmtpMailer
from adapters.oidc.authlib_client import TENANT_PLACEHOLDER, AuthlibOidcClient, OidcProviderConfig
from adapters.otp.pyotp_totp import PyOtpTotpService
from adapters.otp.segno_qr import SegnoQrRenderer
from adapters.passwords import Argon2PasswordHasher, is_common_password
from adapters.passwords.hash_memory import keep_hash_memory
from adapters.passwords.hashing_priority import lower_this_thread
from adapters.redis_pipelined import PipelinedRedis
from adapters.revocation.in_process import InProcessRevocationStore
from adapters.revocation.redis_store import RedisRevocationStore
from adapters.storage.audit_group_commit import GroupCommitAuditJournal
from adapters.storage.audit_partitions import SqlAuditPartitions
from adapters.storage.audit_sealer import SqlAuditSealer
from adapters.storage.audit_verification import SqlAuditChainVerifier
from adapters.storage.database import create_engine
from adapters.storage.egress_binding_batches import BatchedEgressBindingLookup
from adapters.storage.egress_repository import SqlEgressBindingLookup
from adapters.storage.expired_rows import SqlExpiredRows
from adapters.storage.session_repository import SqlSessionRepository
from adapters.storage.unit_of_work import SqlUnitOfWorkFactory
from adapters.storage.vault_reader import SqlVaultReader
from adapters.tokens.admin_token_issuer import EdDsaAdminTokens
from adapters.tokens.jwt_issuer import EdDsaJwtIssuer
from adapters.tokens.service_token_issuer import EdDsaServiceTokens
from application.account_closure import ClosurePipeline, ClosurePorts, ResumeAccountClosures
from application.admin_actions import AdminPanelPorts
from application.authorization import AuthzDeps, PermissionResolver
from application.bridge_keys import BridgeKeys
from application.bridge_lookups import BridgeKeyLookups
from application.bridge_sightings import BridgeSightings
from application.egress_issuance import EgressIssuer
from application.egress_job import RunEgressJob
from application.egress_ledger import EgressLedger, EgressPolicy, EgressPorts
from application.identity import IdentityDeps, IdentityPolicy
from application.periodic_job import PeriodicJob
from application.ports.audit import AuditPartitions, AuditSealer
from application.ports.authz_cache import AuthzVersions
from application.ports.bridge_presence import BridgePresence
from application.ports.clock import Clock
from application.ports.egress_gateway import EgressGateway
from application.ports.egress_provider import EgressProvider
from application.ports.housekeeping import RateLimitKeys
from application.ports.mailer import Mailer
from application.ports.oidc import OidcClient
from application.ports.rate_limiter import RateLimit, RateLimiter
from application.ports.revocation_store import RevocationStore
from application.sso_ports import SsoPorts
from application.use_cases.account_closure import CloseOwnAccount
from application.use_cases.accounts import RegisterUser, ResendVerification, VerifyEmail
from application.use_cases.admin_administrators import (
    DemoteAdministrator,
    ListAdministrators,
    PromoteAdministrator,
    UnlockAdministrator,
)
from application.use_cases.admin_enrolment import CompleteAdminEnrolment
from application.use_cases.admin_login import (
    AdminDeps,
    AdminLogin,
    AdminLogout,
    AdminPolicy,
    AuthenticateAdmin,
)
from application.use_cases.admin_orgs import GetOrgOverview, ListOrgs, SetOrgStatus
from application.use_cases.admin_users import (
    GetUserDetail,
    ListUsers,
    LogoutUserEverywhere,
    PauseUser,
    SetUserPlan,
    UnpauseUser,
)
from application.use_cases.audit_housekeeping import KeepAuditPartitionsAhead, SealAuditLog
from application.use_cases.bearer import AuthenticateBearer
from application.use_cases.bridge_api import (
    AckCommand,
    BridgeApiPorts,
    BridgeDeals,
    BridgeHeartbeat,
    BridgeHello,
    BridgeLimits,
    BridgePositions,
    DescribeBridge,
    PollCommands,
)
from application.use_cases.bridges import (
    BridgePolicy,
    BridgePorts,
    CreateBridge,
    GetBridge,
    ListBridges,
    QueueBridgeCommand,
    RenameBridge,
    RevokeBridge,
    RotateBridgeKey,
)
from application.use_cases.broker_connections import (
    BrokerPolicy,
    BrokerPorts,
    CompleteBrokerAuthorization,
    DeleteBrokerConnection,
    GetBrokerConnection,
    ListBrokerConnections,
    RenameBrokerConnection,
    StartBrokerAuthorization,
)
from application.use_cases.broker_credentials import (
    AccessBrokerCredentials,
    AccessIntegrationSecret,
    RefreshDue,
    ReportInvalidToken,
    ResealCredentials,
    VaultPolicy,
    VaultPorts,
)
from application.use_cases.egress_addresses import (
    ForceEgressAllocation,
    ListEgressAddresses,
    MyEgressAddress,
    ReleaseEgressAddress,
)
from application.use_cases.egress_admission import AdmitEgress
from application.use_cases.egress_audit import AuditEgress
from application.use_cases.forward_auth import ForwardAuth
from application.use_cases.housekeeping import HousekeepingPolicy, RunHousekeeping
from application.use_cases.integration_secrets import (
    CreateIntegrationSecret,
    DeleteIntegrationSecret,
    IntegrationSecretPorts,
    ListIntegrationSecrets,
)
from application.use_cases.login import Login
from application.use_cases.org_audit import ListOrgAudit
from application.use_cases.org_members import (
    AcceptInvitation,
    ChangeMemberRole,
    InviteMember,
    ListMembers,
    RemoveMember,
)
from application.use_cases.org_roles import (
    CreateGroup,
    CreateRole,
    DeleteGroup,
    DeleteRole,
    GetGroup,
    ListGroups,
    ListRoles,
    SetGroupMember,
    SetGroupRole,
    SetMemberRole,
    UpdateGroup,
    UpdateRole,
)
from application.use_cases.organisations import (
    CreateOrg,
    GetOrg,
    ListMyOrgs,
    SwitchOrg,
    UpdateOrg,
)
from application.use_cases.passwords import ChangePassword, ForgotPassword, ResetPassword
from application.use_cases.permissions_query import CheckPermissions, MyPermissions
from application.use_cases.platform_admins import (
    CreatePlatformAdmin,
    ListPlatformAdmins,
    ResetAdminFactor,
    UnlockPlatformAdmin,
)
from application.use_cases.platform_audit import (
    ExportPlatformAudit,
    ListPlatformAudit,
    PlatformAuditDeps,
    VerifyAuditChain,
)
from application.use_cases.profile import GetProfile, UpdateProfile
from application.use_cases.refresh import RefreshSession
from application.use_cases.service_clients import (
    CreateServiceClient,
    DisableServiceClient,
    IssueServiceToken,
    ListServiceClients,
    RotateServiceClientSecret,
    ServiceClientPorts,
)
from application.use_cases.sessions import ListSessions, Logout, RevokeOtherSessions, RevokeSession
from application.use_cases.sso_identities import ListIdentities, StartIdentityLink, UnlinkIdentity
from application.use_cases.sso_sign_in import CompleteSsoSignIn, StartSsoSignIn
from application.use_cases.two_factor import (
    CompleteMfaLogin,
    ConfirmTotp,
    DisableTotp,
    GetTwoFactorStatus,
    Reauthenticate,
    RegenerateRecoveryCodes,
    SetupTotp,
)
from application.use_cases.user_deletion import DeleteUser, IssueUserDeletionToken, UserDeletionPorts
from domain.plans import PlanCatalog
from domain.sso import SsoProvider
from entrypoints.settings import Settings, parse_duration, parse_durations, parse_host_port, parse_limits

log = logging.getLogger("bulwark")


class VaultKeysRefused(ValueError):
    """The public API was handed the vault's keys, or the vault has none."""


def load_keys(settings: Settings) -> Keyring:
    if settings.keys_file is not None:
        if looks_like_vault_keys(settings.keys_file.read_bytes()):
            raise VaultKeysRefused(
                f"BULWARK_KEYS_FILE={settings.keys_file} is the vault's key file: the public API must "
                "never hold the opening keys (give it only their public halves)"
            )
        return load_keyring(settings.keys_file)
    return ensure_development_keyring(settings.data_dir / "keys.json")


def load_vault_keys_for(settings: Settings) -> VaultKeys:
    if settings.vault_keys_file is not None:
        return load_vault_keys(settings.vault_keys_file)
    if settings.is_production:
        raise VaultKeysRefused(
            "production needs BULWARK_VAULT_KEYS_FILE for the vault (`bulwark keys init --vault`)"
        )
    return ensure_development_vault_keys(settings.data_dir / "vault-keys.json")


def broker_sealer(settings: Settings, keyring: Keyring) -> HpkeSealer | None:
    """The public API seals with the vault's public half: from its keyring in production, from
    the generated vault key file in development. None: no vault, so no broker connections."""
    active = keyring.active_broker_sealing_key
    if active is not None:
        return HpkeSealer(active, keyring.broker_sealing_keys[active])
    if settings.in_process_vault and not settings.is_production:
        vault = load_vault_keys_for(settings)
        return HpkeSealer(vault.active_opening_key_id, vault.public_halves()[vault.active_opening_key_id])
    return None


def ctrader_adapters(
    settings: Settings, provider_secrets: dict[str, str]
) -> tuple[HttpxCtraderOAuth | None, WebsocketCtraderAccounts | None]:
    if not settings.ctrader_client_id:
        return None, None
    secret = provider_secrets.get("ctrader_client_secret") or (
        "" if settings.is_production else settings.ctrader_client_secret
    )
    oauth = HttpxCtraderOAuth(
        client_id=settings.ctrader_client_id,
        client_secret=secret,
        redirect_uri=settings.effective_ctrader_redirect_uri,
        auth_url=settings.ctrader_auth_url,
        token_url=settings.ctrader_token_url,
    )
    accounts = WebsocketCtraderAccounts(
        client_id=settings.ctrader_client_id, client_secret=secret, api_url=settings.ctrader_api_url
    )
    return oauth, accounts


def egress_provider(settings: Settings, provider_secrets: dict[str, str]) -> EgressProvider:
    """The provider BULWARK_EGRESS_PROVIDER names; settings validation already checked its config.
    The Hetzner token is read from the keyring only, never from the environment."""
    if settings.egress_provider == "hetzner":
        token = provider_secrets.get(HETZNER_TOKEN_SECRET, "")
        if not token:
            raise KeyringError(
                f"BULWARK_EGRESS_PROVIDER=hetzner needs {HETZNER_TOKEN_SECRET} in the keyring "
                f"(`bulwark keys set-secret {HETZNER_TOKEN_SECRET}`)"
            )
        api = HetznerApiClient(base_url=settings.egress_hetzner_api_url, token=token)
        return HetznerPrimaryIpProvider(
            api, server_id=settings.egress_hetzner_server_id, datacenter=settings.egress_hetzner_datacenter
        )
    return StaticPoolProvider(settings.egress_pool_addresses)


def egress_gateway(settings: Settings, clock: Clock) -> EgressGateway | None:
    """The egress gateway (Squid with Bulwark's helper) as the ledger sees it, through Squid's
    cache manager (BULWARK_EGRESS_SQUID_MANAGER_URL). Unset: None, and teardowns wait in
    `draining` (reported by the audit as stuck): a detach nobody can confirm is never assumed done."""
    if not settings.egress_squid_manager_url:
        return None
    return SquidEgressGateway(
        SquidManager(settings.egress_squid_manager_url),
        SsTunnelCutter() if settings.egress_cut_tunnels else None,
        clock,
        cached_answer_life=timedelta(seconds=settings.egress_squid_credentials_ttl_seconds),
        # What `render-squid` renders: the static pool; a growing provider's is rendered from
        # the ledger again on a timer, so only the egress host's own addresses are checked.
        pool=settings.egress_pool_addresses.addresses if settings.egress_provider == "static" else None,
        host=IpRouteHostAddresses(),
    )


def egress_policy(settings: Settings) -> EgressPolicy:
    return EgressPolicy(
        downgrade_grace=timedelta(
            seconds=parse_duration("egress_downgrade_grace", settings.egress_downgrade_grace)
        ),
        cooldown=timedelta(seconds=parse_duration("egress_cooldown", settings.egress_cooldown)),
        stuck_after=timedelta(seconds=parse_duration("egress_stuck_after", settings.egress_stuck_after)),
        paused_stale_after=timedelta(
            seconds=parse_duration("egress_paused_stale_after", settings.egress_paused_stale_after)
        ),
    )


@dataclass
class EgressApi:
    """Dedicated egress addresses: the ledger, its job, the admin panel's and the user's views."""

    ledger: EgressLedger
    job: RunEgressJob
    scheduler: PeriodicJob  # runs the job (started and stopped with the container)
    list_addresses: ListEgressAddresses
    release: ReleaseEgressAddress
    force_allocation: ForceEgressAllocation
    mine: MyEgressAddress
    audit: AuditEgress
    bindings: SqlEgressBindingLookup  # what the gateway's helper asks on every admission

    @classmethod
    def wire(cls, ports: EgressPorts, engine: AsyncEngine, interval_seconds: float) -> "EgressApi":
        ledger = EgressLedger(ports)
        job = RunEgressJob(ports, ledger)
        return cls(
            ledger=ledger,
            job=job,
            scheduler=PeriodicJob(job, interval_seconds),
            list_addresses=ListEgressAddresses(ports),
            release=ReleaseEgressAddress(ports),
            force_allocation=ForceEgressAllocation(ports, ledger),
            mine=MyEgressAddress(ports),
            audit=AuditEgress(ports),
            bindings=SqlEgressBindingLookup(engine),
        )


HETZNER_TOKEN_SECRET = "hetzner_api_token"  # noqa: S105 -- the keyring entry's name, not a secret
SSO_CALLBACK_PATH = "/api/v1/auth/sso/{provider}/callback"
_MULTI_TENANT = ("common", "organizations", "consumers")


def sso_redirect_uri(settings: Settings, provider: SsoProvider) -> str:
    return settings.effective_sso_redirect_base_url + SSO_CALLBACK_PATH.format(provider=provider)


def sso_clients(settings: Settings, provider_secrets: dict[str, str]) -> dict[SsoProvider, OidcClient]:
    """One OIDC client per provider whose client id is set. Production reads the secrets only
    from the keyring (settings refuse them in the environment there)."""

    def secret(provider: SsoProvider) -> str:
        name = f"sso_{provider}_client_secret"
        return provider_secrets.get(name) or ("" if settings.is_production else getattr(settings, name))

    configs: list[OidcProviderConfig] = []
    if settings.sso_google_client_id:
        issuer = settings.sso_google_issuer.rstrip("/")
        configs.append(
            OidcProviderConfig(
                name=SsoProvider.GOOGLE,
                display_name="Google",
                discovery_url=f"{issuer}/.well-known/openid-configuration",
                issuer=issuer,
                client_id=settings.sso_google_client_id,
                client_secret=secret(SsoProvider.GOOGLE),
                redirect_uri=sso_redirect_uri(settings, SsoProvider.GOOGLE),
            )
        )
    if settings.sso_azure_client_id:
        authority = settings.sso_azure_authority.rstrip("/")
        tenant = settings.sso_azure_tenant
        # v2.0 endpoints; a multi-tenant endpoint's issuer carries `{tenantid}`, which each token's
        # own `tid` fills in. A named tenant's issuer is the one its discovery document states.
        multi_tenant = tenant.lower() in _MULTI_TENANT
        configs.append(
            OidcProviderConfig(
                name=SsoProvider.AZURE,
                display_name="Microsoft",
                discovery_url=f"{authority}/{tenant}/v2.0/.well-known/openid-configuration",
                issuer=f"{authority}/{TENANT_PLACEHOLDER}/v2.0" if multi_tenant else None,
                client_id=settings.sso_azure_client_id,
                client_secret=secret(SsoProvider.AZURE),
                redirect_uri=sso_redirect_uri(settings, SsoProvider.AZURE),
            )
        )
    if settings.sso_oidc_client_id:
        issuer = settings.sso_oidc_issuer.rstrip("/")
        configs.append(
            OidcProviderConfig(
                name=SsoProvider.OIDC,
                display_name=settings.sso_oidc_name,
                discovery_url=f"{issuer}/.well-known/openid-configuration",
                issuer=settings.sso_oidc_issuer,
                client_id=settings.sso_oidc_client_id,
                client_secret=secret(SsoProvider.OIDC),
                redirect_uri=sso_redirect_uri(settings, SsoProvider.OIDC),
            )
        )
    return {SsoProvider(config.name): AuthlibOidcClient(config) for config in configs}


@dataclass
class SsoApi:
    """Single sign-on and the user's linked identities, wired."""

    start: StartSsoSignIn
    complete: CompleteSsoSignIn
    list_identities: ListIdentities
    start_link: StartIdentityLink
    unlink: UnlinkIdentity
    clients: dict[SsoProvider, OidcClient]

    @classmethod
    def wire(cls, ports: SsoPorts) -> "SsoApi":
        return cls(
            start=StartSsoSignIn(ports),
            complete=CompleteSsoSignIn(ports),
            list_identities=ListIdentities(ports),
            start_link=StartIdentityLink(ports),
            unlink=UnlinkIdentity(ports),
            clients=dict(ports.clients),
        )

    async def close(self) -> None:
        for client in self.clients.values():
            if isinstance(client, AuthlibOidcClient):
                await client.close()


@dataclass
class BridgeApi:
    """MT5 bridges: their management on the public API, and the bridge API itself, wired."""

    policy: BridgePolicy
    create: CreateBridge
    list_bridges: ListBridges
    get: GetBridge
    rename: RenameBridge
    revoke: RevokeBridge
    rotate_key: RotateBridgeKey
    queue_command: QueueBridgeCommand
    hello: BridgeHello
    heartbeat: BridgeHeartbeat
    deals: BridgeDeals
    positions: BridgePositions
    poll_commands: PollCommands
    ack_command: AckCommand
    describe: DescribeBridge
    sightings: BridgeSightings  # the batched last-seen writes (started and stopped with the container)

    @classmethod
    def wire(cls, ports: BridgePorts, api: BridgeApiPorts) -> "BridgeApi":
        return cls(
            policy=ports.policy,
            sightings=api.sightings,
            create=CreateBridge(ports),
            list_bridges=ListBridges(ports),
            get=GetBridge(ports),
            rename=RenameBridge(ports),
            revoke=RevokeBridge(ports),
            rotate_key=RotateBridgeKey(ports),
            queue_command=QueueBridgeCommand(ports),
            hello=BridgeHello(api),
            heartbeat=BridgeHeartbeat(api),
            deals=BridgeDeals(api),
            positions=BridgePositions(api),
            poll_commands=PollCommands(api),
            ack_command=AckCommand(api),
            describe=DescribeBridge(api),
        )


@dataclass
class BrokerApi:
    """Broker connections and integration secrets on the public API, wired."""

    start_authorization: StartBrokerAuthorization
    complete_authorization: CompleteBrokerAuthorization
    list_connections: ListBrokerConnections
    get_connection: GetBrokerConnection
    rename_connection: RenameBrokerConnection
    delete_connection: DeleteBrokerConnection
    create_secret: CreateIntegrationSecret
    list_secrets: ListIntegrationSecrets
    delete_secret: DeleteIntegrationSecret

    @classmethod
    def wire(cls, ports: BrokerPorts, secrets: IntegrationSecretPorts) -> "BrokerApi":
        return cls(
            start_authorization=StartBrokerAuthorization(ports),
            complete_authorization=CompleteBrokerAuthorization(ports),
            list_connections=ListBrokerConnections(ports),
            get_connection=GetBrokerConnection(ports),
            rename_connection=RenameBrokerConnection(ports),
            delete_connection=DeleteBrokerConnection(ports),
            create_secret=CreateIntegrationSecret(secrets),
            list_secrets=ListIntegrationSecrets(secrets),
            delete_secret=DeleteIntegrationSecret(secrets),
        )


@dataclass
class IdentityApi:
    """The identity use cases, wired."""

    register: RegisterUser
    verify_email: VerifyEmail
    resend_verification: ResendVerification
    login: Login
    refresh: RefreshSession
    logout: Logout
    list_sessions: ListSessions
    revoke_session: RevokeSession
    revoke_other_sessions: RevokeOtherSessions
    change_password: ChangePassword
    forgot_password: ForgotPassword
    reset_password: ResetPassword
    profile: GetProfile
    update_profile: UpdateProfile
    authenticate: AuthenticateBearer
    complete_mfa_login: CompleteMfaLogin
    setup_totp: SetupTotp
    confirm_totp: ConfirmTotp
    regenerate_recovery_codes: RegenerateRecoveryCodes
    disable_totp: DisableTotp
    two_factor_status: GetTwoFactorStatus
    reauthenticate: Reauthenticate

    @classmethod
    def wire(cls, deps: IdentityDeps) -> "IdentityApi":
        return cls(
            register=RegisterUser(deps),
            verify_email=VerifyEmail(deps),
            resend_verification=ResendVerification(deps),
            login=Login(deps),
            refresh=RefreshSession(deps),
            logout=Logout(deps),
            list_sessions=ListSessions(deps),
            revoke_session=RevokeSession(deps),
            revoke_other_sessions=RevokeOtherSessions(deps),
            change_password=ChangePassword(deps),
            forgot_password=ForgotPassword(deps),
            reset_password=ResetPassword(deps),
            profile=GetProfile(deps),
            update_profile=UpdateProfile(deps),
            authenticate=AuthenticateBearer(deps),
            complete_mfa_login=CompleteMfaLogin(deps),
            setup_totp=SetupTotp(deps),
            confirm_totp=ConfirmTotp(deps),
            regenerate_recovery_codes=RegenerateRecoveryCodes(deps),
            disable_totp=DisableTotp(deps),
            two_factor_status=GetTwoFactorStatus(deps),
            reauthenticate=Reauthenticate(deps),
        )


@dataclass
class AdminApi:
    """Platform administrators: their own login, sessions and the operator's commands, wired."""

    login: AdminLogin
    logout: AdminLogout
    authenticate: AuthenticateAdmin
    create: CreatePlatformAdmin
    list_admins: ListPlatformAdmins
    unlock: UnlockPlatformAdmin
    reset_factor: ResetAdminFactor
    administrators: ListAdministrators
    promote: PromoteAdministrator
    demote: DemoteAdministrator
    unlock_administrator: UnlockAdministrator
    enrol: CompleteAdminEnrolment
    audit_list: ListPlatformAudit
    audit_export: ExportPlatformAudit
    audit_verify: VerifyAuditChain
    policy: AdminPolicy

    @classmethod
    def wire(cls, deps: AdminDeps, audit: PlatformAuditDeps) -> "AdminApi":
        return cls(
            login=AdminLogin(deps),
            logout=AdminLogout(deps),
            authenticate=AuthenticateAdmin(deps),
            create=CreatePlatformAdmin(deps),
            list_admins=ListPlatformAdmins(deps),
            unlock=UnlockPlatformAdmin(deps),
            reset_factor=ResetAdminFactor(deps),
            administrators=ListAdministrators(deps),
            promote=PromoteAdministrator(deps),
            demote=DemoteAdministrator(deps),
            unlock_administrator=UnlockAdministrator(deps),
            enrol=CompleteAdminEnrolment(deps),
            audit_list=ListPlatformAudit(audit),
            audit_export=ExportPlatformAudit(audit),
            audit_verify=VerifyAuditChain(audit),
            policy=deps.policy,
        )


@dataclass
class AdminPanelApi:
    """The admin panel's accounts and organisations, wired."""

    list_users: ListUsers
    get_user: GetUserDetail
    pause_user: PauseUser
    unpause_user: UnpauseUser
    logout_user_everywhere: LogoutUserEverywhere
    set_user_plan: SetUserPlan
    list_orgs: ListOrgs
    get_org: GetOrgOverview
    set_org_status: SetOrgStatus
    plans: PlanCatalog

    @classmethod
    def wire(cls, ports: AdminPanelPorts, egress: EgressLedger) -> "AdminPanelApi":
        return cls(
            plans=ports.plans,
            list_users=ListUsers(ports),
            get_user=GetUserDetail(ports),
            pause_user=PauseUser(ports),
            unpause_user=UnpauseUser(ports),
            logout_user_everywhere=LogoutUserEverywhere(ports),
            set_user_plan=SetUserPlan(ports, egress),
            list_orgs=ListOrgs(ports),
            get_org=GetOrgOverview(ports),
            set_org_status=SetOrgStatus(ports),
        )


@dataclass
class ClosureApi:
    """Account closure (own account, admin deletion) and its resumption, wired."""

    close_own_account: CloseOwnAccount
    issue_deletion_token: IssueUserDeletionToken
    delete_user: DeleteUser
    resume: ResumeAccountClosures
    scheduler: PeriodicJob  # resumes unfinished closures (started and stopped with the container)

    @classmethod
    def wire(cls, deps: IdentityDeps, pipeline: ClosurePipeline, interval_seconds: float) -> "ClosureApi":
        resume = ResumeAccountClosures(pipeline)
        ports = UserDeletionPorts(uow=deps.uow, clock=deps.clock, pipeline=pipeline)
        return cls(
            close_own_account=CloseOwnAccount(deps, pipeline),
            issue_deletion_token=IssueUserDeletionToken(ports),
            delete_user=DeleteUser(ports),
            resume=resume,
            scheduler=PeriodicJob(resume, interval_seconds),
        )


@dataclass
class AuditHousekeepingApi:
    """The audit log's sealer and partitions, wired, with the jobs that run them in each worker."""

    seal: SealAuditLog
    keep_partitions: KeepAuditPartitionsAhead
    sealer_job: PeriodicJob
    partitions_job: PeriodicJob

    @classmethod
    def wire(
        cls,
        sealers: tuple[AuditSealer, AuditSealer],
        partitions: AuditPartitions,
        settings: Settings,
        *,
        seals_inline: bool,
    ) -> "AuditHousekeepingApi":
        """`sealers`: (one that waits for what has committed, for `bulwark jobs run`; one that
        never waits, for the periodic job)."""
        waiting, background_sealer = sealers
        keep = KeepAuditPartitionsAhead(partitions, settings.audit_partitions_ahead_months)
        # SQLite seals every append inline and has no partitions: no background rounds there.
        background = 0.0 if seals_inline else 1.0
        return cls(
            seal=SealAuditLog(waiting),
            keep_partitions=keep,
            sealer_job=PeriodicJob(
                SealAuditLog(background_sealer), settings.audit_seal_interval_seconds * background
            ),
            partitions_job=PeriodicJob(keep, settings.jobs_interval_seconds * background),
        )

    async def start(self) -> None:
        await self.sealer_job.start()
        await self.partitions_job.start()

    async def stop(self) -> None:
        await self.partitions_job.stop()
        await self.sealer_job.stop()


@dataclass
class AuthzApi:
    """Organisations, members, roles, groups and authorization checks, wired."""

    resolver: PermissionResolver
    create_org: CreateOrg
    list_my_orgs: ListMyOrgs
    get_org: GetOrg
    update_org: UpdateOrg
    switch_org: SwitchOrg
    list_members: ListMembers
    invite_member: InviteMember
    accept_invitation: AcceptInvitation
    change_member_role: ChangeMemberRole
    remove_member: RemoveMember
    list_roles: ListRoles
    create_role: CreateRole
    update_role: UpdateRole
    delete_role: DeleteRole
    set_member_role: SetMemberRole
    list_groups: ListGroups
    get_group: GetGroup
    create_group: CreateGroup
    update_group: UpdateGroup
    delete_group: DeleteGroup
    set_group_member: SetGroupMember
    set_group_role: SetGroupRole
    list_audit: ListOrgAudit
    my_permissions: MyPermissions
    check: CheckPermissions

    @classmethod
    def wire(cls, deps: AuthzDeps) -> "AuthzApi":
        return cls(
            resolver=PermissionResolver(deps),
            create_org=CreateOrg(deps),
            list_my_orgs=ListMyOrgs(deps),
            get_org=GetOrg(deps),
            update_org=UpdateOrg(deps),
            switch_org=SwitchOrg(deps),
            list_members=ListMembers(deps),
            invite_member=InviteMember(deps),
            accept_invitation=AcceptInvitation(deps),
            change_member_role=ChangeMemberRole(deps),
            remove_member=RemoveMember(deps),
            list_roles=ListRoles(deps),
            create_role=CreateRole(deps),
            update_role=UpdateRole(deps),
            delete_role=DeleteRole(deps),
            set_member_role=SetMemberRole(deps),
            list_groups=ListGroups(deps),
            get_group=GetGroup(deps),
            create_group=CreateGroup(deps),
            update_group=UpdateGroup(deps),
            delete_group=DeleteGroup(deps),
            set_group_member=SetGroupMember(deps),
            set_group_role=SetGroupRole(deps),
            list_audit=ListOrgAudit(deps),
            my_permissions=MyPermissions(deps),
            check=CheckPermissions(deps),
        )


@dataclass
class HousekeepingJobs:
    """Dead sessions and spent tokens purged, the limiter's keys checked: once (`bulwark jobs
    run`), or every BULWARK_HOUSEKEEPING_INTERVAL_SECONDS in each worker."""

    run: RunHousekeeping
    scheduler: PeriodicJob

    @classmethod
    def wire(
        cls, settings: Settings, engine: AsyncEngine, limiter_keys: RateLimitKeys, clock: Clock
    ) -> "HousekeepingJobs":
        policy = HousekeepingPolicy(
            retention=timedelta(days=settings.housekeeping_retention_days),
            batch_size=settings.housekeeping_batch_size,
            longest_limit_window_seconds=longest_limit_window(settings),
        )
        run = RunHousekeeping(SqlExpiredRows(engine), limiter_keys, clock, policy)
        return cls(run=run, scheduler=PeriodicJob(run, settings.housekeeping_interval_seconds))


def longest_limit_window(settings: Settings) -> float:
    """The longest window of any rate limit configured: no limiter key needs to outlive it."""
    return max(
        seconds
        for setting in dataclasses.fields(settings)
        if "_limit_per_" in setting.name
        for _, seconds in parse_limits(setting.name, getattr(settings, setting.name))
    )


@dataclass
class Container:
    settings: Settings
    engine: AsyncEngine
    redis: aioredis.Redis | None
    key_provider: LocalKeyProvider
    secret_box: EnvelopeSecretBox
    limiter: RateLimiter
    revocations: RevocationStore
    mailer: Mailer
    clock: Clock
    probe: DependencyProbe
    hasher: Argon2PasswordHasher
    argon2_pool: ThreadPoolExecutor
    tokens: EdDsaJwtIssuer
    identity: IdentityApi
    authz: AuthzApi
    versions: AuthzVersions
    brokers: BrokerApi
    bridges: BridgeApi
    bridge_versions: AuthzVersions
    forward_auth: ForwardAuth
    admin: AdminApi
    admin_panel: AdminPanelApi
    closures: ClosureApi
    egress: EgressApi
    sso: SsoApi
    housekeeping: HousekeepingJobs
    audit: AuditHousekeepingApi
    extras: dict[str, Any] = field(default_factory=dict)

    async def start(self) -> None:
        await self.revocations.start()
        await self.versions.start()
        await self.bridge_versions.start()
        await self.bridges.sightings.start()
        await self.closures.scheduler.start()
        await self.egress.scheduler.start()
        await self.housekeeping.scheduler.start()
        await self.audit.start()

    async def stop(self) -> None:
        await self.audit.stop()
        await self.housekeeping.scheduler.stop()
        await self.egress.scheduler.stop()
        await self.closures.scheduler.stop()
        await self.bridges.sightings.stop()  # the last marks, before the pool closes
        await self.bridge_versions.stop()
        await self.versions.stop()
        await self.revocations.stop()
        await self.sso.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()
        self.hasher.close()
        self.argon2_pool.shutdown(wait=False)


def recently_revoked_sessions(
    engine: AsyncEngine, window_seconds: int
) -> Callable[[], Awaitable[list[tuple[UUID, datetime]]]]:
    """Only sessions revoked within one access-token lifetime can still have live tokens."""

    async def load() -> list[tuple[UUID, datetime]]:
        since = datetime.now(UTC) - timedelta(seconds=window_seconds + 60)
        async with engine.connect() as connection:
            return await SqlSessionRepository(connection).revoked_since(since)

    return load


def build_redis(settings: Settings) -> aioredis.Redis | None:
    if not settings.redis_url:
        return None
    # A blocking pool waits for a free connection instead of failing under load.
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=50, socket_connect_timeout=2, timeout=5
    )
    return aioredis.Redis(connection_pool=pool)


def build_mailer(settings: Settings) -> Mailer:
    if settings.smtp_host:
        return SmtpMailer(
            settings.smtp_host,
            settings.smtp_port,
            sender=settings.mail_from,
            username=settings.smtp_username or None,
            password=settings.smtp_password or None,
            starttls=settings.smtp_starttls,
        )
    return DevOutboxMailer(settings.data_dir / "outbox.jsonl", logger=logging.getLogger("bulwark.mail"))


def build_container(
    settings: Settings, *, redis_namespace: str = "bulwark", clock: Clock | None = None
) -> Container:
    """`clock` lets tests pin time (TOTP steps, expiries); production uses the system clock."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.effective_database_url, pool_size=settings.database_pool_size)
    redis = build_redis(settings)
    keyring = load_keys(settings)
    key_provider = LocalKeyProvider(keyring)
    limiter: RateLimiter
    limiter_keys: RateLimitKeys
    revocations: RevocationStore
    versions: AuthzVersions
    bridge_versions: AuthzVersions
    presence: BridgePresence
    if redis is not None:
        versions = RedisAuthzVersions(redis, redis_namespace)
        # The same mechanism, keyed by bridge id: a bridge's key cache entry dies with its version.
        bridge_versions = RedisAuthzVersions(redis, f"{redis_namespace}:bridges")
        limiter = RedisSlidingWindowLimiter(redis, redis_namespace)
        limiter_keys = RedisRateLimitKeys(redis, redis_namespace)
        # Shares the limiter's windows; its own pipelined connection (the hottest call of all).
        presence = RedisBridgePresence(PipelinedRedis(settings.redis_url), redis_namespace)
        revocations = RedisRevocationStore(
            redis,
            redis_namespace,
            max_token_ttl_seconds=settings.access_token_ttl_seconds,
            recently_revoked=recently_revoked_sessions(engine, settings.access_token_ttl_seconds),
        )
    else:
        versions = InProcessAuthzVersions()
        bridge_versions = InProcessAuthzVersions()
        in_process_limiter = InProcessSlidingWindowLimiter()
        limiter = in_process_limiter
        limiter_keys = in_process_limiter
        presence = InProcessBridgePresence(in_process_limiter)
        revocations = InProcessRevocationStore(max_token_ttl_seconds=settings.access_token_ttl_seconds)
    clock = clock or SystemClock()
    keep_hash_memory(settings.argon2_memory_kib)  # process-wide: no page faults per hash
    argon2_pool = ThreadPoolExecutor(
        max_workers=argon2_threads(settings),
        thread_name_prefix="argon2",
        initializer=functools.partial(lower_this_thread, settings.argon2_nice),
    )
    hasher = Argon2PasswordHasher(
        key_provider,
        executor=argon2_pool,
        time_cost=settings.argon2_time_cost,
        memory_cost_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )
    tokens = EdDsaJwtIssuer(
        key_provider,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.access_token_ttl_seconds,
        clock=clock.now,
    )
    mailer = build_mailer(settings)
    secret_box = EnvelopeSecretBox(engine, key_provider)
    deps = IdentityDeps(
        uow=SqlUnitOfWorkFactory(engine),
        hasher=hasher,
        tokens=tokens,
        limiter=limiter,
        revocations=revocations,
        mailer=mailer,
        clock=clock,
        policy=identity_policy(settings),
        is_common_password=is_common_password,
        refresh_successor_key=_derived_key(key_provider, b"refresh-successor"),
        recovery_code_key=_derived_key(key_provider, b"recovery-codes"),
        totp=PyOtpTotpService(),
        qr=SegnoQrRenderer(),
        secret_box=secret_box,
    )
    authz_deps = AuthzDeps(
        identity=deps, versions=versions, cache=LayeredPermissionCache(redis, redis_namespace)
    )
    resolver = PermissionResolver(authz_deps)
    sealer = broker_sealer(settings, keyring)
    oauth, account_lister = ctrader_adapters(settings, dict(keyring.provider_secrets))
    brokers = BrokerApi.wire(
        BrokerPorts(
            uow=deps.uow,
            resolver=resolver,
            clock=clock,
            oauth=oauth,
            accounts=account_lister,
            sealer=sealer,
            policy=BrokerPolicy(
                stepup_window=timedelta(seconds=settings.stepup_window_seconds),
                revoke_at_broker_url=settings.ctrader_revoke_url,
            ),
        ),
        IntegrationSecretPorts(uow=deps.uow, resolver=resolver, clock=clock, sealer=sealer),
    )
    bridge_keys = BridgeKeys(
        uow=deps.uow,
        clock=clock,
        bridge_versions=bridge_versions,
        org_versions=versions,
        secret_key=_derived_key(key_provider, b"bridge-keys"),
    )
    bridge_per_ip = _limits("bridge_limit_per_ip", settings.bridge_limit_per_ip)
    key_lookups = BridgeKeyLookups(bridge_keys, limiter, clock, bridge_per_ip)
    bridges = BridgeApi.wire(
        BridgePorts(
            uow=deps.uow,
            resolver=resolver,
            clock=clock,
            keys=bridge_keys,
            policy=BridgePolicy(
                key_overlap=timedelta(seconds=settings.bridge_key_overlap_seconds),
                offline_after=timedelta(seconds=settings.bridge_offline_after_seconds),
                stepup_window=timedelta(seconds=settings.stepup_window_seconds),
                command_ttl=timedelta(seconds=settings.bridge_command_ttl_seconds),
            ),
        ),
        BridgeApiPorts(
            uow=deps.uow,
            clock=clock,
            keys=bridge_keys,
            limiter=limiter,
            presence=presence,
            sightings=BridgeSightings(deps.uow, settings.bridge_sightings_flush_seconds),
            lookups=key_lookups,
            mailer=mailer,
            heartbeat_interval=timedelta(seconds=settings.bridge_offline_after_seconds / 3),
            frontend_url=settings.frontend_url,
            limits=BridgeLimits(
                per_key=_limits("bridge_limit_per_key", settings.bridge_limit_per_key),
                per_ip=bridge_per_ip,
            ),
        ),
    )
    identity = IdentityApi.wire(deps)
    # Seals what had committed when asked (verification, `bulwark jobs run`), waiting up to 2 s.
    audit_sealer = SqlAuditSealer(engine, wait_seconds=2.0)
    admin = AdminApi.wire(
        AdminDeps(
            identity=deps,
            # The same argon2 work and pool, under the admin password's own pepper purpose.
            hasher=Argon2PasswordHasher(
                key_provider,
                executor=argon2_pool,
                time_cost=settings.argon2_time_cost,
                memory_cost_kib=settings.argon2_memory_kib,
                parallelism=settings.argon2_parallelism,
                pepper_purpose="admin-password",
            ),
            tokens=EdDsaAdminTokens(key_provider, issuer=settings.jwt_issuer, clock=clock.now),
            policy=admin_policy(settings),
            recovery_code_key=_derived_key(key_provider, b"admin-recovery-codes"),
        ),
        PlatformAuditDeps(uow=deps.uow, verifier=SqlAuditChainVerifier(engine), sealer=audit_sealer),
    )
    closure_pipeline = ClosurePipeline(
        ClosurePorts(
            uow=deps.uow,
            clock=clock,
            revocations=revocations,
            org_versions=versions,
            bridge_keys=bridge_keys,
            profiles=deps.profiles,
            revocation_keep=deps.policy.session_absolute + deps.policy.access_token_ttl,
        )
    )
    egress = EgressApi.wire(
        EgressPorts(
            uow=deps.uow,
            clock=clock,
            provider=egress_provider(settings, dict(keyring.provider_secrets)),
            gateway=egress_gateway(settings, clock),
            mailer=mailer,
            plans=settings.plan_catalog,
            policy=egress_policy(settings),
        ),
        engine,
        settings.jobs_interval_seconds,
    )
    return Container(
        settings=settings,
        engine=engine,
        redis=redis,
        key_provider=key_provider,
        secret_box=secret_box,
        limiter=limiter,
        revocations=revocations,
        mailer=mailer,
        clock=clock,
        probe=DependencyProbe(engine, redis),
        hasher=hasher,
        argon2_pool=argon2_pool,
        tokens=tokens,
        identity=identity,
        authz=AuthzApi.wire(authz_deps),
        versions=versions,
        brokers=brokers,
        bridges=bridges,
        bridge_versions=bridge_versions,
        forward_auth=ForwardAuth(identity.authenticate, resolver, key_lookups),
        admin=admin,
        admin_panel=AdminPanelApi.wire(
            AdminPanelPorts(identity=deps, versions=versions, plans=settings.plan_catalog), egress.ledger
        ),
        closures=ClosureApi.wire(deps, closure_pipeline, settings.jobs_interval_seconds),
        egress=egress,
        sso=SsoApi.wire(
            SsoPorts(identity=deps, clients=sso_clients(settings, dict(keyring.provider_secrets)))
        ),
        housekeeping=HousekeepingJobs.wire(settings, engine, limiter_keys, clock),
        audit=AuditHousekeepingApi.wire(
            (audit_sealer, SqlAuditSealer(engine)),
            SqlAuditPartitions(engine),
            settings,
            seals_inline=engine.dialect.name == "sqlite",
        ),
    )


def argon2_threads(settings: Settings) -> int:
    """Hashes in flight per worker. Every worker hashing on every core oversubscribes the CPU
    (and its memory bandwidth, 46 MiB a hash): by default the cores are shared out."""
    if settings.argon2_threads:
        return settings.argon2_threads
    return max(1, (os.cpu_count() or 1) // settings.effective_workers)


def _derived_key(keys: LocalKeyProvider, label: bytes) -> bytes:
    """A purpose-bound key derived from the active pepper (a secret that never enters the DB)."""
    return hmac.new(keys.pepper(keys.active_pepper_version()), label, hashlib.sha256).digest()


def _limits(name: str, text: str) -> tuple[RateLimit, ...]:
    return tuple(RateLimit(count, seconds) for count, seconds in parse_limits(name, text))


def admin_policy(settings: Settings) -> AdminPolicy:
    return AdminPolicy(
        session_idle=timedelta(seconds=settings.admin_session_idle_seconds),
        session_absolute=timedelta(seconds=settings.admin_session_absolute_seconds),
        login_per_account=_limits("admin_login_limit_per_account", settings.admin_login_limit_per_account),
        login_per_ip=_limits("admin_login_limit_per_ip", settings.admin_login_limit_per_ip),
        lock_durations=tuple(
            timedelta(seconds=s)
            for s in parse_durations("admin_lockout_seconds", settings.admin_lockout_seconds)
        ),
    )


def identity_policy(settings: Settings) -> IdentityPolicy:
    return IdentityPolicy(
        frontend_url=settings.frontend_url,
        access_token_ttl=timedelta(seconds=settings.access_token_ttl_seconds),
        session_idle=timedelta(seconds=settings.session_idle_seconds),
        session_absolute=timedelta(seconds=settings.session_absolute_seconds),
        refresh_grace=timedelta(seconds=settings.refresh_grace_seconds),
        verify_email_ttl=timedelta(seconds=settings.verify_email_ttl_seconds),
        reset_password_ttl=timedelta(seconds=settings.reset_password_ttl_seconds),
        password_min_length=settings.password_min_length,
        login_per_account=_limits("login_limit_per_account", settings.login_limit_per_account),
        login_per_ip=_limits("login_limit_per_ip", settings.login_limit_per_ip),
        register_per_ip=_limits("register_limit_per_ip", settings.register_limit_per_ip),
        mail_per_ip=_limits("mail_limit_per_ip", settings.mail_limit_per_ip),
        mail_per_address=_limits("mail_limit_per_address", settings.mail_limit_per_address),
        totp_issuer=settings.totp_issuer,
        stepup_window=timedelta(seconds=settings.stepup_window_seconds),
        mfa_token_ttl=timedelta(seconds=settings.mfa_token_ttl_seconds),
        mfa_per_user=_limits("mfa_limit_per_user", settings.mfa_limit_per_user),
        mfa_per_ip=_limits("mfa_limit_per_ip", settings.mfa_limit_per_ip),
    )


# --- the credential vault: a second entrypoint on the same core -------------------------------

VAULT_AUDIENCE = "bulwark-vault"


def vault_opener(settings: Settings, keys: VaultKeys) -> HpkeOpener | ReloadingHpkeOpener:
    """An opener that rereads the key file on an unknown key id: a rotation's new key is picked
    up by running workers without a restart."""

    def load() -> tuple[dict[str, bytes], str]:
        fresh = load_vault_keys_for(settings)
        return dict(fresh.opening_keys), fresh.active_opening_key_id

    return ReloadingHpkeOpener(load)


@dataclass
class VaultContainer:
    settings: Settings
    engine: AsyncEngine
    redis: aioredis.Redis | None
    keys: VaultKeys
    tokens: EdDsaServiceTokens
    limiter: RateLimiter
    clock: Clock
    access: AccessBrokerCredentials
    report_invalid: ReportInvalidToken
    access_secret: AccessIntegrationSecret
    refresh_due: RefreshDue
    reseal: ResealCredentials
    issue_token: IssueServiceToken
    create_client: CreateServiceClient
    list_clients: ListServiceClients
    disable_client: DisableServiceClient
    rotate_client_secret: RotateServiceClientSecret
    probe: DependencyProbe
    reader: SqlVaultReader
    oauth: HttpxCtraderOAuth | None = None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        if self.oauth is not None:
            await self.oauth.close()
        await self.reader.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()


def build_vault_container(
    settings: Settings, *, redis_namespace: str = "bulwark", clock: Clock | None = None
) -> VaultContainer:
    """The vault holds the opening keys and the service-token keys, and nothing of the public
    API's keyring: no password pepper, no user-token key, no master key."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    keys = load_vault_keys_for(settings)
    engine = create_engine(settings.effective_database_url, pool_size=settings.database_pool_size)
    redis = build_redis(settings)
    limiter: RateLimiter = (
        RedisSlidingWindowLimiter(redis, redis_namespace)
        if redis is not None
        else InProcessSlidingWindowLimiter()
    )
    clock = clock or SystemClock()
    uow = SqlUnitOfWorkFactory(engine)
    oauth, _ = ctrader_adapters(settings, dict(keys.provider_secrets))
    reader = SqlVaultReader(engine, pool_size=settings.database_pool_size)
    tokens = EdDsaServiceTokens(
        keys.signing_keys,
        keys.active_signing_kid,
        issuer=f"{settings.jwt_issuer}/vault",
        audience=VAULT_AUDIENCE,
        clock=lambda: clock.now().timestamp(),
    )
    vault = VaultPorts(
        uow=uow,
        clock=clock,
        opener=vault_opener(settings, keys),
        oauth=oauth,
        mailer=build_mailer(settings),
        limiter=limiter,
        journal=GroupCommitAuditJournal(engine),
        reader=reader,
        egress=EgressIssuer(
            bindings=SqlEgressBindingLookup(engine),
            signer=EdDsaEgressCredentialSigner(
                private_signing_keys(keys.signing_keys),
                keys.active_signing_kid,
                issuer=egress_issuer(settings),
            ),
            clock=clock,
            lifetime=timedelta(seconds=settings.egress_credential_ttl_seconds),
        ),
        policy=VaultPolicy(
            frontend_url=settings.frontend_url,
            refresh_margin=timedelta(seconds=settings.vault_refresh_margin_seconds),
            access_per_client=_limits(
                "vault_access_limit_per_client", settings.vault_access_limit_per_client
            ),
        ),
    )
    clients = ServiceClientPorts(
        uow=uow,
        clock=clock,
        tokens=tokens,
        limiter=limiter,
        secret_key=keys.client_secret_key,
        rotation_overlap=timedelta(seconds=settings.service_client_secret_overlap_seconds),
    )
    return VaultContainer(
        settings=settings,
        engine=engine,
        redis=redis,
        keys=keys,
        tokens=tokens,
        limiter=limiter,
        clock=clock,
        access=AccessBrokerCredentials(vault),
        report_invalid=ReportInvalidToken(vault),
        access_secret=AccessIntegrationSecret(vault),
        refresh_due=RefreshDue(vault),
        reseal=ResealCredentials(vault),
        issue_token=IssueServiceToken(clients),
        create_client=CreateServiceClient(clients),
        list_clients=ListServiceClients(clients),
        disable_client=DisableServiceClient(clients),
        rotate_client_secret=RotateServiceClientSecret(clients),
        probe=DependencyProbe(engine, redis),
        reader=reader,
        oauth=oauth,
    )


# --- the egress gateway's helper: a third entrypoint on the same core (Squid runs it) ------------


def egress_issuer(settings: Settings) -> str:
    return f"{settings.jwt_issuer}/vault"


def egress_verify_keys(settings: Settings) -> dict[str, Any]:
    """The public halves of the vault's signing keys: from BULWARK_EGRESS_VERIFY_KEYS_FILE, or in
    development from the generated vault key file. The egress host never holds a private key."""
    if settings.egress_verify_keys_file is not None:
        return dict(load_verify_keys(settings.egress_verify_keys_file))
    if settings.is_production:
        raise VaultKeysRefused(
            "the Squid helper needs BULWARK_EGRESS_VERIFY_KEYS_FILE (`bulwark egress verify-keys`)"
        )
    return dict(public_halves(load_vault_keys_for(settings).signing_keys))


@dataclass
class EgressHelperContainer:
    engine: AsyncEngine
    admit: AdmitEgress

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self.engine.dispose()


def build_egress_helper(settings: Settings, *, clock: Clock | None = None) -> EgressHelperContainer:
    """What one Squid helper process needs: the public verify keys and a read of the ledger."""
    engine = create_engine(settings.effective_database_url, pool_size=settings.egress_helper_pool_size)
    clock = clock or SystemClock()
    verifier = EdDsaEgressCredentialVerifier(
        egress_verify_keys(settings), issuer=egress_issuer(settings), clock=lambda: clock.now().timestamp()
    )
    return EgressHelperContainer(
        engine=engine,
        # The logins Squid sends together share one read of the ledger (never a cached one).
        admit=AdmitEgress(verifier=verifier, bindings=BatchedEgressBindingLookup(engine), clock=clock),
    )


async def egress_ledger_addresses(settings: Settings) -> list[str]:
    """Every address the ledger holds that is not given back: a growing provider's pool, which
    squid.conf must name (the egress host reads the ledger already, for its helper)."""
    engine = create_engine(settings.effective_database_url, pool_size=1)
    try:
        return await SqlEgressBindingLookup(engine).held_addresses()
    finally:
        await engine.dispose()


def egress_squid_config(
    settings: Settings,
    helper_command: str,
    layout: SquidLayout | None = None,
    addresses: Sequence[str] | None = None,
) -> EgressSquidConfig:
    """squid.conf's static part from the settings: the static pool's addresses (or the ones
    given: a growing provider's, from the ledger), the broker targets, the helper and how long
    Squid may reuse its answers."""
    manager = urlsplit(settings.egress_squid_manager_url or "http://127.0.0.1:3129/")
    return EgressSquidConfig(
        listen=parse_host_port("egress_squid_listen", settings.egress_squid_listen),
        manager_port=manager.port or 3129,
        addresses=settings.egress_pool_addresses.addresses if addresses is None else addresses,
        targets=[parse_host_port("egress_broker_targets", t) for t in settings.egress_broker_targets],
        helper_command=helper_command,
        credentials_ttl_seconds=settings.egress_squid_credentials_ttl_seconds,
        helper_children=settings.egress_helper_children,
        layout=layout or SquidLayout(),
    )
