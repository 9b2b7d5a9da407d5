"""The permission catalog, the system-role matrix and the authorization decision (pure domain)."""

import re
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from domain.groups import Group
from domain.permissions import (
    ACTIONS,
    CATALOG,
    RESOURCES,
    SENSITIVE_RESOURCES,
    SYSTEM_ROLE_BY_ID,
    SYSTEM_ROLE_IDS,
    SYSTEM_ROLE_NAMES,
    SYSTEM_ROLE_PERMISSIONS,
    EffectivePermissions,
    Grant,
    SystemRole,
    is_write,
    parse_permissions,
    permission_matrix_markdown,
    resolve_permissions,
    role_permissions,
    system_role,
    system_roles,
)
from domain.roles import Permission, Role

# The contract, written out by hand: x = granted, . = not granted.
# Columns: Viewer, Trader, Strategist, Developer, Operations, Risk Manager, Administrator.
EXPECTED_MATRIX = """
strategies:read             x x x x x x x
strategies:create           . . x x . . x
strategies:update           . . x x . . x
strategies:delete           . . x . . . x
strategies:execute          . . x x . . x
deployments:read            x x x x x x x
deployments:create          . . . x x . x
deployments:update          . . . x x . x
deployments:delete          . . . x x . x
deployments:execute         . x . . x . x
orders:read                 x x x x x x x
orders:create               . x . . . . x
orders:update               . x . . . . x
orders:delete               . x . . . . x
orders:execute              . x . . . . x
positions:read              x x x x x x x
positions:create            . . . . . . x
positions:update            . x . . . . x
positions:delete            . . . . . . x
positions:execute           . x . . . . x
broker_connections:read     . x . x x x x
broker_connections:create   . . . . x . x
broker_connections:update   . . . . x . x
broker_connections:delete   . . . . x . x
broker_connections:execute  . . . . x . x
bridges:read                . . . x x x x
bridges:create              . . . x x . x
bridges:update              . . . x x . x
bridges:delete              . . . x x . x
bridges:execute             . . . x x . x
risk_limits:read            x x x x x x x
risk_limits:create          . . . . . x x
risk_limits:update          . . . . . x x
risk_limits:delete          . . . . . x x
risk_limits:execute         . . . . . x x
reports:read                x x x x x x x
reports:create              . . x . . x x
reports:update              . . . . . . x
reports:delete              . . . . . . x
reports:execute             . . . . . . x
audit_log:read              . . . . . x x
audit_log:create            . . . . . . x
audit_log:update            . . . . . . x
audit_log:delete            . . . . . . x
audit_log:execute           . . . . . . x
members:read                . . . . . . x
members:create              . . . . . . x
members:update              . . . . . . x
members:delete              . . . . . . x
members:execute             . . . . . . x
groups:read                 . . . . . . x
groups:create               . . . . . . x
groups:update               . . . . . . x
groups:delete               . . . . . . x
groups:execute              . . . . . . x
roles:read                  x x x x x x x
roles:create                . . . . . . x
roles:update                . . . . . . x
roles:delete                . . . . . . x
roles:execute               . . . . . . x
org_settings:read           . . . . . . x
org_settings:create         . . . . . . x
org_settings:update         . . . . . . x
org_settings:delete         . . . . . . x
org_settings:execute        . . . . . . x
billing:read                . . . . . . x
billing:create              . . . . . . x
billing:update              . . . . . . x
billing:delete              . . . . . . x
billing:execute             . . . . . . x
"""

COLUMNS = (
    SystemRole.VIEWER,
    SystemRole.TRADER,
    SystemRole.STRATEGIST,
    SystemRole.DEVELOPER,
    SystemRole.OPERATIONS,
    SystemRole.RISK_MANAGER,
    SystemRole.ADMINISTRATOR,
)


def _parse_expected() -> dict[tuple[SystemRole, str], bool]:
    expected: dict[tuple[SystemRole, str], bool] = {}
    for line in EXPECTED_MATRIX.strip().splitlines():
        permission, *cells = line.split()
        assert len(cells) == len(COLUMNS), line
        for role, cell in zip(COLUMNS, cells, strict=True):
            assert cell in {"x", "."}, line
            expected[(role, permission)] = cell == "x"
    return expected


EXPECTED = _parse_expected()
NOW = datetime(2025, 1, 1, tzinfo=UTC)
ORG = UUID("00000000-0000-4000-8000-00000000000a")
OTHER_ORG = UUID("00000000-0000-4000-8000-00000000000b")


def _group(name: str, org_id: UUID = ORG) -> Group:
    return Group(id=uuid4(), org_id=org_id, name=name, created_at=NOW)


def _custom(name: str, *permissions: str, org_id: UUID = ORG) -> Role:
    return Role(
        id=uuid4(), name=name, permissions=frozenset(map(Permission.parse, permissions)), org_id=org_id
    )


def test_expected_matrix_covers_exactly_the_catalog() -> None:
    rows = {permission for (_, permission) in EXPECTED}
    assert rows == {str(p) for p in CATALOG}
    assert len(CATALOG) == len(RESOURCES) * len(ACTIONS) == 70


@pytest.mark.parametrize(
    ("role", "permission"),
    sorted(EXPECTED),
    ids=[f"{role.value}-{permission}" for role, permission in sorted(EXPECTED)],
)
def test_system_role_matrix(role: SystemRole, permission: str) -> None:
    # Both the static table and the decision for a user holding just that role agree with the contract.
    assert (Permission.parse(permission) in SYSTEM_ROLE_PERMISSIONS[role]) is EXPECTED[(role, permission)]
    assert resolve_permissions([system_role(role)]).allows(permission) is EXPECTED[(role, permission)]


def test_viewer_only_reads_and_never_a_sensitive_resource() -> None:
    viewer = SYSTEM_ROLE_PERMISSIONS[SystemRole.VIEWER]
    assert viewer
    assert all(p.action == "read" for p in viewer)
    assert not any(p.resource in SENSITIVE_RESOURCES for p in viewer)
    assert not resolve_permissions([system_role(SystemRole.VIEWER)]).allows_any_write()


def test_sensitive_resources_include_trading_infrastructure_audit_billing_and_people() -> None:
    assert {"broker_connections", "bridges", "audit_log", "billing", "members"} <= SENSITIVE_RESOURCES
    assert set(RESOURCES) >= SENSITIVE_RESOURCES


def test_risk_manager_changes_risk_limits_but_cannot_trade() -> None:
    effective = resolve_permissions([system_role(SystemRole.RISK_MANAGER)])
    assert effective.allows("risk_limits:create")
    assert effective.allows("risk_limits:update")
    assert effective.allows("audit_log:read")
    for forbidden in ("orders:create", "orders:update", "orders:execute", "orders:delete"):
        assert not effective.allows(forbidden), forbidden
    for forbidden in ("positions:create", "positions:update", "positions:execute", "positions:delete"):
        assert not effective.allows(forbidden), forbidden
    assert not effective.allows("deployments:execute")


def test_administrator_has_the_whole_catalog() -> None:
    assert SYSTEM_ROLE_PERMISSIONS[SystemRole.ADMINISTRATOR] == CATALOG
    assert resolve_permissions([system_role(SystemRole.ADMINISTRATOR)]).permissions == CATALOG


def test_only_administrator_can_manage_people_roles_settings_or_billing() -> None:
    # Anyone else holding one of these could grant themselves the rest (privilege escalation).
    for role in SystemRole:
        if role is SystemRole.ADMINISTRATOR:
            continue
        for p in SYSTEM_ROLE_PERMISSIONS[role]:
            if p.resource in {"members", "groups", "roles", "org_settings", "billing"}:
                assert p == Permission("roles", "read"), (role, p)


def test_every_role_sees_at_least_what_a_viewer_sees() -> None:
    for role in SystemRole:
        assert SYSTEM_ROLE_PERMISSIONS[SystemRole.VIEWER] <= SYSTEM_ROLE_PERMISSIONS[role], role


def test_every_system_permission_is_in_the_catalog() -> None:
    for role in SystemRole:
        assert SYSTEM_ROLE_PERMISSIONS[role] <= CATALOG, role


def test_system_role_ids_are_stable_and_distinct() -> None:
    # Hard-coded: other services and stored rows rely on these never changing.
    assert SYSTEM_ROLE_IDS[SystemRole.VIEWER] == UUID("0638fe20-8851-58aa-a54b-fb24103f7f9c")
    assert SYSTEM_ROLE_IDS[SystemRole.ADMINISTRATOR] == UUID("b16d1566-f356-552d-b4c8-78a6020b3987")
    assert len(set(SYSTEM_ROLE_IDS.values())) == len(SystemRole) == 7
    assert all(SYSTEM_ROLE_BY_ID[uid] is role for role, uid in SYSTEM_ROLE_IDS.items())


def test_system_roles_are_shared_by_every_org_and_named_for_display() -> None:
    roles = system_roles()
    assert [r.name for r in roles] == [
        "Viewer",
        "Trader",
        "Strategist",
        "Developer",
        "Operations",
        "Risk Manager",
        "Administrator",
    ]
    assert all(r.system and r.org_id is None for r in roles)
    assert [r.id for r in roles] == [SYSTEM_ROLE_IDS[role] for role in SystemRole]
    assert all(
        r.permissions == SYSTEM_ROLE_PERMISSIONS[role] for r, role in zip(roles, SystemRole, strict=True)
    )
    assert SYSTEM_ROLE_NAMES[SystemRole.RISK_MANAGER] == "Risk Manager"


def test_no_roles_allow_nothing() -> None:
    effective = resolve_permissions([], [])
    assert effective.permissions == frozenset()
    assert not effective.allows_any_write()
    for permission in CATALOG:
        assert not effective.allows(permission)
        assert not effective.allows(str(permission))
    assert EffectivePermissions() == effective


def test_empty_group_and_group_with_no_roles_allow_nothing() -> None:
    effective = resolve_permissions([], [(_group("empty"), [])])
    assert effective.grants == ()


def test_permission_held_only_through_a_group_names_the_group() -> None:
    desk = _group("Desk")
    effective = resolve_permissions(
        [system_role(SystemRole.VIEWER)], [(desk, [system_role(SystemRole.TRADER)])]
    )
    assert effective.allows("orders:create")
    assert effective.sources("orders:create") == [
        Grant(
            permission=Permission("orders", "create"),
            role_id=SYSTEM_ROLE_IDS[SystemRole.TRADER],
            role_name="Trader",
            via_group_id=desk.id,
            via_group_name="Desk",
        )
    ]


def test_permission_held_directly_and_through_a_group_lists_both_sources_direct_first() -> None:
    desk = _group("Desk")
    viewer = system_role(SystemRole.VIEWER)
    effective = resolve_permissions([viewer], [(desk, [viewer])])
    sources = effective.sources(Permission("orders", "read"))
    assert [(g.role_name, g.via_group_id, g.via_group_name) for g in sources] == [
        ("Viewer", None, None),
        ("Viewer", desk.id, "Desk"),
    ]


def test_same_role_through_two_groups_lists_each_group() -> None:
    a, b = _group("Alpha"), _group("Beta")
    trader = system_role(SystemRole.TRADER)
    effective = resolve_permissions([], [(b, [trader]), (a, [trader])])
    assert [g.via_group_name for g in effective.sources("orders:execute")] == ["Alpha", "Beta"]


def test_union_of_direct_roles_and_every_group() -> None:
    quant = _custom("Quant", "strategies:execute")
    group_one = _group("One")
    group_two = _group("Two")
    effective = resolve_permissions(
        [quant],
        [
            (group_one, [_custom("Reporter", "reports:create")]),
            (group_two, [_custom("Kill", "risk_limits:execute")]),
        ],
    )
    assert effective.names == {"strategies:execute", "reports:create", "risk_limits:execute"}


def test_removing_the_group_from_the_input_removes_what_only_it_granted() -> None:
    desk = _group("Desk")
    with_group = resolve_permissions(
        [system_role(SystemRole.VIEWER)], [(desk, [system_role(SystemRole.TRADER)])]
    )
    without_group = resolve_permissions([system_role(SystemRole.VIEWER)], [])
    assert with_group.allows("orders:create")
    assert not without_group.allows("orders:create")
    assert without_group.allows("orders:read")


def test_duplicate_direct_roles_give_one_grant() -> None:
    viewer = system_role(SystemRole.VIEWER)
    effective = resolve_permissions([viewer, viewer])
    assert len(effective.sources("orders:read")) == 1


def test_grants_are_sorted_by_permission_then_role_then_group_whatever_the_input_order() -> None:
    g1, g2 = _group("Alpha"), _group("Beta")
    direct = [_custom("Zed", "orders:read", "billing:read"), _custom("Amy", "orders:read")]
    groups = [(g2, [_custom("Mid", "orders:read")]), (g1, [direct[0]])]
    forward = resolve_permissions(direct, groups)
    backward = resolve_permissions(list(reversed(direct)), list(reversed(groups)))
    assert forward == backward
    assert [(str(g.permission), g.role_name, g.via_group_name) for g in forward.grants] == [
        ("billing:read", "Zed", None),
        ("billing:read", "Zed", "Alpha"),
        ("orders:read", "Amy", None),
        ("orders:read", "Mid", "Beta"),
        ("orders:read", "Zed", None),
        ("orders:read", "Zed", "Alpha"),
    ]


def test_stale_permission_in_a_custom_role_is_dropped() -> None:
    stale = _custom("Old", "orders:read", "reports:export", "orders:approve")
    effective = resolve_permissions([stale])
    assert effective.names == {"orders:read"}
    assert not effective.allows("reports:export")
    assert not effective.allows(Permission("orders", "approve"))
    assert role_permissions(stale) == {Permission("orders", "read")}


def test_stored_system_role_cannot_widen_its_permissions() -> None:
    # A tampered or stale stored copy of Viewer still grants exactly what the code says Viewer grants.
    tampered = Role(
        id=SYSTEM_ROLE_IDS[SystemRole.VIEWER],
        name="Viewer (edited)",
        permissions=frozenset({Permission("orders", "create"), Permission("billing", "read")}),
        system=True,
    )
    effective = resolve_permissions([tampered])
    assert effective.permissions == SYSTEM_ROLE_PERMISSIONS[SystemRole.VIEWER]
    assert not effective.allows("orders:create")
    assert {g.role_name for g in effective.grants} == {"Viewer"}


def test_custom_role_flagged_system_is_still_only_a_custom_role() -> None:
    impostor = Role(
        id=uuid4(), name="Administrator", permissions=frozenset(CATALOG), org_id=None, system=True
    )
    effective = resolve_permissions([impostor], org_id=ORG)
    assert effective.grants == ()


def test_with_org_id_roles_and_groups_of_another_org_are_ignored() -> None:
    foreign_role = _custom("Foreign", "orders:create", org_id=OTHER_ORG)
    foreign_group = _group("Foreign desk", org_id=OTHER_ORG)
    own_group = _group("Own desk")
    effective = resolve_permissions(
        [foreign_role, system_role(SystemRole.VIEWER)],
        [(foreign_group, [system_role(SystemRole.ADMINISTRATOR)]), (own_group, [foreign_role])],
        org_id=ORG,
    )
    assert effective.permissions == SYSTEM_ROLE_PERMISSIONS[SystemRole.VIEWER]
    # Without the org the caller asked for no check, and the same input would grant more.
    assert resolve_permissions([foreign_role]).allows("orders:create")


def test_own_org_custom_role_counts_with_org_id() -> None:
    mine = _custom("Mine", "billing:read")
    assert resolve_permissions([], [(_group("Finance"), [mine])], org_id=ORG).allows("billing:read")


@pytest.mark.parametrize(
    "text",
    [
        "orders",
        "",
        ":",
        "orders:",
        ":create",
        "orders:create:now",
        " orders:create",
        "ORDERS:CREATE",
        "*:*",
        "orders:*",
    ],
)
def test_allows_refuses_malformed_or_unknown_strings_without_raising(text: str) -> None:
    admin = resolve_permissions([system_role(SystemRole.ADMINISTRATOR)])
    assert admin.allows(text) is False


def test_allows_accepts_strings_and_permissions() -> None:
    trader = resolve_permissions([system_role(SystemRole.TRADER)])
    assert trader.allows("orders:create")
    assert trader.allows(Permission("orders", "create"))
    assert not trader.allows("billing:read")
    assert trader.allows_any_write()


def test_sources_of_a_permission_not_held_or_malformed_is_empty() -> None:
    viewer = resolve_permissions([system_role(SystemRole.VIEWER)])
    assert viewer.sources("orders:create") == []
    assert viewer.sources("garbage") == []


def test_parse_permissions_accepts_catalog_permissions() -> None:
    assert parse_permissions(["orders:create", "reports:read", "orders:create"]) == {
        Permission("orders", "create"),
        Permission("reports", "read"),
    }
    assert parse_permissions([]) == frozenset()
    assert parse_permissions(str(p) for p in CATALOG) == CATALOG


@pytest.mark.parametrize(
    ("texts", "named"),
    [
        (["orders:read", "orders:approve", "nope:read"], "orders:approve"),
        (["orders:read", "wallets:read"], "wallets:read"),
        (["orders:read", "orders"], "'orders'"),
        (["", "orders:read"], "''"),
        (["*:*"], "*:*"),
        (["Orders:Read"], "Orders:Read"),
    ],
)
def test_parse_permissions_refuses_unknown_or_malformed_naming_the_first(
    texts: list[str], named: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        parse_permissions(texts)


def test_parse_permissions_refuses_a_lone_string() -> None:
    with pytest.raises(TypeError):
        parse_permissions("orders:read")


def test_is_write_is_anything_but_read() -> None:
    assert not is_write(Permission("orders", "read"))
    assert not is_write("billing:read")
    for action in ("create", "update", "delete", "execute"):
        assert is_write(Permission("orders", action))
    with pytest.raises(ValueError):
        is_write("orders")


def test_matrix_markdown_matches_the_contract() -> None:
    lines = permission_matrix_markdown().strip().splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == ["Permission", *(SYSTEM_ROLE_NAMES[role] for role in COLUMNS)]
    assert len(lines) == 2 + 70
    seen: dict[tuple[SystemRole, str], bool] = {}
    for line in lines[2:]:
        permission, *cells = (cell.strip() for cell in line.strip("|").split("|"))
        for role, cell in zip(COLUMNS, cells, strict=True):
            assert cell in {"✓", ""}
            seen[(role, permission.strip("`"))] = cell == "✓"
    assert seen == EXPECTED
