"""The permission catalog, the seven system roles and the authorization decision.

Everything here is pure: the decision is a function of the roles a user holds directly and through
groups, so it can be tested exhaustively and cached by the caller without hidden inputs.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from uuid import UUID, uuid5

from domain.groups import Group
from domain.roles import Permission, Role

RESOURCES: tuple[str, ...] = (
    "strategies",
    "deployments",
    "orders",
    "positions",
    "broker_connections",
    "bridges",
    "risk_limits",
    "reports",
    "audit_log",
    "members",
    "groups",
    "roles",
    "org_settings",
    "billing",
)
# `execute` means "make it act": run a backtest (strategies), start/stop a live deployment, send an
# order, close a position, test a broker connection or bridge, trip/reset a risk limit (kill switch).
ACTIONS: tuple[str, ...] = ("read", "create", "update", "delete", "execute")

CATALOG: frozenset[Permission] = frozenset(Permission(r, a) for r in RESOURCES for a in ACTIONS)

# Resources a Viewer may not even read, and why:
# - broker_connections, bridges: reveal the trading infrastructure (which brokers and accounts, where
#   the bridges run) — the map an attacker needs, and none of a read-only observer's business;
# - audit_log: shows other people's activity, IP addresses and user agents;
# - billing: the organisation's financial and payment details;
# - members, groups: personal data (names, e-mail addresses) and who holds which power;
# - org_settings: the security posture (2FA enforcement and later SSO/IP rules).
SENSITIVE_RESOURCES: frozenset[str] = frozenset(
    {"broker_connections", "bridges", "audit_log", "billing", "members", "groups", "org_settings"}
)


class SystemRole(StrEnum):
    VIEWER = "viewer"
    TRADER = "trader"
    STRATEGIST = "strategist"
    DEVELOPER = "developer"
    OPERATIONS = "operations"
    RISK_MANAGER = "risk_manager"
    ADMINISTRATOR = "administrator"


SYSTEM_ROLE_NAMES: dict[SystemRole, str] = {
    SystemRole.VIEWER: "Viewer",
    SystemRole.TRADER: "Trader",
    SystemRole.STRATEGIST: "Strategist",
    SystemRole.DEVELOPER: "Developer",
    SystemRole.OPERATIONS: "Operations",
    SystemRole.RISK_MANAGER: "Risk Manager",
    SystemRole.ADMINISTRATOR: "Administrator",
}

SYSTEM_ROLE_DESCRIPTIONS: dict[SystemRole, str] = {
    SystemRole.VIEWER: "Reads strategies, deployments, orders, positions, risk limits and reports.",
    SystemRole.TRADER: "Places and manages orders, closes positions, starts and stops live deployments.",
    SystemRole.STRATEGIST: "Designs and backtests strategies and produces reports.",
    SystemRole.DEVELOPER: "Writes strategy code, packages deployments and manages bridges.",
    SystemRole.OPERATIONS: "Runs deployments, bridges and broker connections; never trades.",
    SystemRole.RISK_MANAGER: "Owns risk limits and the kill switch, reads the audit log; cannot trade.",
    SystemRole.ADMINISTRATOR: "Every permission in the organisation.",
}

# Fixed forever: system role ids are uuid5 under this namespace, so they are the same in every org,
# every database and every deployment (other services may hard-code them). Never change it.
SYSTEM_ROLE_NAMESPACE = UUID("796a3e26-74eb-4898-be9b-25fb400253c8")

SYSTEM_ROLE_IDS: dict[SystemRole, UUID] = {
    role: uuid5(SYSTEM_ROLE_NAMESPACE, f"bulwark:system-role:{role.value}") for role in SystemRole
}
SYSTEM_ROLE_BY_ID: dict[UUID, SystemRole] = {uid: role for role, uid in SYSTEM_ROLE_IDS.items()}
# Held directly, it is the org administrator role itself: the two are granted and taken together.
ADMINISTRATOR_ROLE_ID: UUID = SYSTEM_ROLE_IDS[SystemRole.ADMINISTRATOR]


def _table(rows: Mapping[str, tuple[str, ...]]) -> frozenset[Permission]:
    return frozenset(Permission(resource, action) for resource, actions in rows.items() for action in actions)


_R = ("read",)
_ALL = ACTIONS

# Every non-administrator role includes the Viewer's reads, so nobody loses sight by gaining a job.
_VIEWER_READS: dict[str, tuple[str, ...]] = {
    "strategies": _R,
    "deployments": _R,
    "orders": _R,
    "positions": _R,
    "risk_limits": _R,
    "reports": _R,
    "roles": _R,
}

SYSTEM_ROLE_PERMISSIONS: dict[SystemRole, frozenset[Permission]] = {
    SystemRole.VIEWER: _table(_VIEWER_READS),
    # Trades: places, amends, cancels and sends orders; adjusts and closes positions; starts/stops live
    # deployments. Reads broker connections (metadata only) to pick the account to trade on.
    SystemRole.TRADER: _table(
        {
            **_VIEWER_READS,
            "deployments": ("read", "execute"),
            "orders": _ALL,
            "positions": ("read", "update", "execute"),
            "broker_connections": _R,
        }
    ),
    # Designs strategies and backtests them (strategies:execute); produces reports. Does not go live.
    SystemRole.STRATEGIST: _table(
        {
            **_VIEWER_READS,
            "strategies": _ALL,
            "reports": ("read", "create"),
        }
    ),
    # Writes strategy code, packages deployments and runs the bridges; does not start live trading
    # (deployments:execute) nor delete strategies, which belong to the strategists.
    SystemRole.DEVELOPER: _table(
        {
            **_VIEWER_READS,
            "strategies": ("read", "create", "update", "execute"),
            "deployments": ("read", "create", "update", "delete"),
            "bridges": _ALL,
            "broker_connections": _R,
        }
    ),
    # Runs the production plumbing: deployments, bridges and broker connections. Never orders.
    SystemRole.OPERATIONS: _table(
        {
            **_VIEWER_READS,
            "deployments": _ALL,
            "bridges": _ALL,
            "broker_connections": _ALL,
        }
    ),
    # Sees everything trading-related and the audit log, owns the risk limits (including the kill
    # switch, risk_limits:execute), and cannot trade: no write on orders or positions.
    SystemRole.RISK_MANAGER: _table(
        {
            **_VIEWER_READS,
            "broker_connections": _R,
            "bridges": _R,
            "risk_limits": _ALL,
            "reports": ("read", "create"),
            "audit_log": _R,
        }
    ),
    SystemRole.ADMINISTRATOR: CATALOG,
}


def system_role(role: SystemRole) -> Role:
    return Role(
        id=SYSTEM_ROLE_IDS[role],
        name=SYSTEM_ROLE_NAMES[role],
        permissions=SYSTEM_ROLE_PERMISSIONS[role],
        org_id=None,
        system=True,
        description=SYSTEM_ROLE_DESCRIPTIONS[role],
    )


def system_roles() -> list[Role]:
    """The seven system roles in display order (fresh objects: callers may not mutate shared ones)."""
    return [system_role(role) for role in SystemRole]


def is_write(permission: Permission | str) -> bool:
    """Anything but a read changes state. A malformed string raises ValueError (a programming error)."""
    parsed = Permission.parse(permission) if isinstance(permission, str) else permission
    return parsed.action != "read"


def parse_permissions(texts: Iterable[str]) -> frozenset[Permission]:
    """Validate the permissions of a custom role: only catalog permissions are allowed."""
    if isinstance(texts, str):  # a lone string would be iterated character by character
        raise TypeError("parse_permissions expects a collection of strings, not one string")
    parsed: set[Permission] = set()
    for text in texts:
        try:
            permission = Permission.parse(text)
        except ValueError:
            raise ValueError(f"malformed permission {text!r}: expected resource:action") from None
        if permission not in CATALOG:
            raise ValueError(f"unknown permission {text!r}: not in the permission catalog")
        parsed.add(permission)
    return frozenset(parsed)


@dataclass(frozen=True)
class Grant:
    """One reason a permission is held: a role, held directly or through a group."""

    permission: Permission
    role_id: UUID
    role_name: str
    via_group_id: UUID | None = None
    via_group_name: str | None = None


def _grant_order(grant: Grant) -> tuple[str, str, bool, str, str, str]:
    # Direct grants sort before group grants of the same role; ids break the remaining ties.
    return (
        str(grant.permission),
        grant.role_name,
        grant.via_group_id is not None,
        grant.via_group_name or "",
        str(grant.role_id),
        str(grant.via_group_id or ""),
    )


@dataclass(frozen=True)
class EffectivePermissions:
    grants: tuple[Grant, ...] = ()

    @cached_property
    def permissions(self) -> frozenset[Permission]:
        return frozenset(grant.permission for grant in self.grants)

    @cached_property
    def names(self) -> frozenset[str]:
        """The permissions as `resource:action` strings (what a cache stores, what allows() looks up)."""
        return frozenset(str(permission) for permission in self.permissions)

    def allows(self, permission: Permission | str) -> bool:
        # Strings are looked up as-is: a malformed or unknown one is simply not held (never raises).
        if isinstance(permission, str):
            return permission in self.names
        return permission in self.permissions

    def allows_any_write(self) -> bool:
        return any(is_write(permission) for permission in self.permissions)

    def sources(self, permission: Permission | str) -> list[Grant]:
        text = permission if isinstance(permission, str) else str(permission)
        return [grant for grant in self.grants if str(grant.permission) == text]


def role_permissions(role: Role) -> frozenset[Permission]:
    """What a role really grants: system roles by their id from the code (a stored copy can never
    widen them), custom roles as stored minus anything no longer in the catalog."""
    system = SYSTEM_ROLE_BY_ID.get(role.id)
    if system is not None:
        return SYSTEM_ROLE_PERMISSIONS[system]
    return role.permissions & CATALOG


def _role_counts(role: Role, org_id: UUID | None) -> bool:
    if org_id is None or role.id in SYSTEM_ROLE_BY_ID:
        return True
    return role.org_id == org_id


def resolve_permissions(
    direct_roles: Iterable[Role],
    group_roles: Iterable[tuple[Group, Iterable[Role]]] = (),
    *,
    org_id: UUID | None = None,
) -> EffectivePermissions:
    """The union of the user's direct roles and the roles of every group they belong to.

    Permissions outside the catalog are dropped (a custom role stored before a permission was retired).
    With `org_id`, groups and custom roles of any other org are ignored as a second wall against a
    storage query that forgot its tenant filter.
    """
    grants: set[Grant] = set()

    def add(role: Role, group: Group | None) -> None:
        if not _role_counts(role, org_id):
            return
        system = SYSTEM_ROLE_BY_ID.get(role.id)
        name = SYSTEM_ROLE_NAMES[system] if system is not None else role.name
        for permission in role_permissions(role):
            grants.add(
                Grant(
                    permission=permission,
                    role_id=role.id,
                    role_name=name,
                    via_group_id=group.id if group is not None else None,
                    via_group_name=group.name if group is not None else None,
                )
            )

    for role in direct_roles:
        add(role, None)
    for group, roles in group_roles:
        if org_id is not None and group.org_id != org_id:
            continue
        for role in roles:
            add(role, group)
    return EffectivePermissions(grants=tuple(sorted(grants, key=_grant_order)))


def permission_matrix_markdown() -> str:
    """The README table: one row per catalog permission, one column per system role."""
    roles = list(SystemRole)
    lines = [
        "| Permission | " + " | ".join(SYSTEM_ROLE_NAMES[role] for role in roles) + " |",
        "|---|" + "|".join(":-:" for _ in roles) + "|",
    ]
    for resource in RESOURCES:
        for action in ACTIONS:
            permission = Permission(resource, action)
            cells = ("✓" if permission in SYSTEM_ROLE_PERMISSIONS[role] else " " for role in roles)
            lines.append(f"| `{permission}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
