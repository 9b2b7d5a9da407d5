"""The org, member, role and group use cases against the in-memory fakes: each use case checks its
own authorization (no route guard in front of them here), taking rights away follows the rules of
granting, and the Administrator role and the org administrator role are one thing."""

import random
import re

import pytest

from application.errors import ApplicationError
from application.ports.audit_query import AuditFilter
from application.use_cases.org_members import LastAdministrator
from domain.orgs import OrgRole
from domain.permissions import ADMINISTRATOR_ROLE_ID, SYSTEM_ROLE_IDS, SystemRole
from domain.users import User
from tests.org_world import (
    ALL,
    CTX,
    OrgWorld,
    RandomOperations,
    assert_one_administrator_rule,
    populate,
    wire,
)
from tests.unit.fakes import Fakes, make_fakes

TRADER = SYSTEM_ROLE_IDS[SystemRole.TRADER]
ROLE_ADMIN = ["roles:read", "roles:create", "roles:update"]


def mailed_token(fakes: Fakes, address: str) -> str:
    bodies = [m.body for m in fakes.mailer.to(address)]
    found = [m.group(1) for body in bodies if (m := re.search(r"accept-invitation\?token=([\w.-]+)", body))]
    assert found, f"no invitation mailed to {address}"
    return found[-1]


@pytest.fixture
def fakes() -> Fakes:
    return make_fakes()


@pytest.fixture
async def world(fakes: Fakes) -> OrgWorld:
    world = OrgWorld(fakes.deps, wire(fakes.deps), lambda address: mailed_token(fakes, address))
    return world


async def org_with(world: OrgWorld, *permissions: str) -> tuple[User, User]:
    """An administrator A, and B holding a custom role with exactly `permissions`."""
    a = await world.new_user("a")
    await world.found(a)
    role = await world.api.create_role(
        world.principal(a.id), world.org_id, "Custom", "", list(permissions), CTX
    )
    b = await world.new_user("b")
    await world.invite_and_accept(a.id, b, OrgRole.MEMBER, [role.id])
    return a, b


def refused(error: pytest.ExceptionInfo[ApplicationError], code: str) -> None:
    assert error.value.code == code, (error.value.code, error.value.detail)


# -- scenario 1: taking rights away is guarded like granting them ---------------------------------


async def test_a_role_manager_cannot_strip_the_administrator_of_the_administrator_role(
    world: OrgWorld,
) -> None:
    a, b = await org_with(world, *ROLE_ADMIN)
    api, org, as_b = world.api, world.org_id, world.principal(b.id)
    with pytest.raises(ApplicationError) as error:
        await api.set_member_role(as_b, org, a.id, ADMINISTRATOR_ROLE_ID, False, CTX)
    refused(error, "org_admin_required")
    state = await world.snapshot()
    assert state.members[a.id].org_role is OrgRole.ADMINISTRATOR and state.members[a.id].permissions == ALL


async def test_a_role_manager_cannot_take_a_group_s_administrator_role_away(world: OrgWorld) -> None:
    a, b = await org_with(world, *ROLE_ADMIN, "groups:read", "groups:update")
    api, org = world.api, world.org_id
    group = await api.create_group(world.principal(a.id), org, "Admins", "", CTX)
    await api.set_group_role(world.principal(a.id), org, group.id, ADMINISTRATOR_ROLE_ID, True, CTX)
    with pytest.raises(ApplicationError) as error:
        await api.set_group_role(world.principal(b.id), org, group.id, ADMINISTRATOR_ROLE_ID, False, CTX)
    refused(error, "org_admin_required")
    assert ADMINISTRATOR_ROLE_ID in (await api.get_group(world.principal(a.id), org, group.id)).role_ids


async def test_roles_holding_what_the_actor_lacks_cannot_be_renamed_cut_down_or_deleted(
    world: OrgWorld,
) -> None:
    a, b = await org_with(world, *ROLE_ADMIN, "roles:delete")
    api, org, as_b = world.api, world.org_id, world.principal(b.id)
    traders = await api.create_role(
        world.principal(a.id), org, "Desk", "", ["orders:read", "orders:execute"], CTX
    )
    for attempt in (
        lambda: api.update_role(as_b, org, traders.id, "Renamed", None, None, CTX),
        lambda: api.update_role(as_b, org, traders.id, None, None, ["orders:read"], CTX),
        lambda: api.delete_role(as_b, org, traders.id, CTX),
    ):
        with pytest.raises(ApplicationError) as error:
            await attempt()
        refused(error, "grant_exceeds_own")
    [kept] = [r for r in await api.list_roles(world.principal(a.id), org) if r.id == traders.id]
    assert kept.name == "Desk" and {str(p) for p in kept.permissions} == {"orders:read", "orders:execute"}


async def test_a_role_or_group_link_is_taken_away_only_by_who_holds_what_it_grants(world: OrgWorld) -> None:
    a, b = await org_with(world, *ROLE_ADMIN, "groups:read", "groups:update")
    api, org, as_a, as_b = world.api, world.org_id, world.principal(a.id), world.principal(b.id)
    c = await world.new_user("c")
    await world.invite_and_accept(a.id, c, OrgRole.MEMBER, [TRADER])
    group = await api.create_group(as_a, org, "Desk", "", CTX)
    await api.set_group_role(as_a, org, group.id, TRADER, True, CTX)
    await api.set_group_member(as_a, org, group.id, c.id, True, CTX)
    for attempt in (
        lambda: api.set_member_role(as_b, org, c.id, TRADER, False, CTX),
        lambda: api.set_group_member(as_b, org, group.id, c.id, False, CTX),
        lambda: api.set_group_role(as_b, org, group.id, TRADER, False, CTX),
    ):
        with pytest.raises(ApplicationError) as error:
            await attempt()
        refused(error, "grant_exceeds_own")
    # Whoever holds what the link grants may take it away, and it is audited.
    await api.set_member_role(as_a, org, c.id, TRADER, False, CTX)
    await api.set_group_member(as_a, org, group.id, c.id, False, CTX)
    await api.set_group_role(as_a, org, group.id, TRADER, False, CTX)
    assert (await world.snapshot()).members[c.id].permissions == frozenset()
    actions = world.deps.uow.db.audit_actions()  # type: ignore[attr-defined]
    assert {"member.role_removed", "group.member_removed", "group.role_removed"} <= set(actions)


async def test_without_the_route_guards_each_use_case_still_asks_for_its_permission(world: OrgWorld) -> None:
    a, b = await org_with(world, "orders:read")
    api, org, as_b = world.api, world.org_id, world.principal(b.id)
    group = await api.create_group(world.principal(a.id), org, "Desk", "", CTX)
    for attempt in (
        lambda: api.list_members(as_b, org),
        lambda: api.list_roles(as_b, org),
        lambda: api.list_groups(as_b, org),
        lambda: api.get_group(as_b, org, group.id),
        lambda: api.update_org(as_b, org, "Mine now", None, CTX),
        lambda: api.create_role(as_b, org, "Empty", "", [], CTX),
        lambda: api.create_group(as_b, org, "Mine", "", CTX),
        lambda: api.update_group(as_b, org, group.id, "Mine", None, CTX),
        lambda: api.delete_group(as_b, org, group.id, CTX),
        lambda: api.set_group_member(as_b, org, group.id, b.id, True, CTX),
        lambda: api.set_member_role(as_b, org, b.id, TRADER, True, CTX),
        lambda: api.invite_member(as_b, org, "x@example.com", OrgRole.MEMBER, [], [], CTX),
        lambda: api.change_member_role(as_b, org, b.id, OrgRole.ADMINISTRATOR, CTX),
        lambda: api.remove_member(as_b, org, a.id, CTX),
        lambda: api.list_audit(as_b, org, AuditFilter(None, None, None, None, None, None), None, 10),
    ):
        with pytest.raises(ApplicationError) as error:
            await attempt()
        refused(error, "permission_denied")


# -- scenario 2 and the one-administrator rule ---------------------------------------------------


async def test_the_last_administrator_cannot_drop_the_administrator_role_any_way(world: OrgWorld) -> None:
    a, _ = await org_with(world, "orders:read")
    api, org, as_a = world.api, world.org_id, world.principal(a.id)
    for attempt in (
        lambda: api.set_member_role(as_a, org, a.id, ADMINISTRATOR_ROLE_ID, False, CTX),
        lambda: api.change_member_role(as_a, org, a.id, OrgRole.MEMBER, CTX),
        lambda: api.remove_member(as_a, org, a.id, CTX),
    ):
        with pytest.raises(LastAdministrator):
            await attempt()
    assert_one_administrator_rule(await world.snapshot(), "the last administrator's attempts")


async def test_the_administrator_role_link_promotes_and_demotes_like_the_org_role(world: OrgWorld) -> None:
    a, b = await org_with(world, "orders:read")
    api, org, as_a = world.api, world.org_id, world.principal(a.id)
    await api.set_member_role(as_a, org, b.id, ADMINISTRATOR_ROLE_ID, True, CTX)
    state = await world.snapshot()
    assert state.members[b.id].org_role is OrgRole.ADMINISTRATOR and state.members[b.id].permissions == ALL
    # Now a may step down by dropping the role: the same demotion as the org role's.
    await api.set_member_role(as_a, org, a.id, ADMINISTRATOR_ROLE_ID, False, CTX)
    state = await world.snapshot()
    assert state.members[a.id].org_role is OrgRole.MEMBER and not state.members[a.id].holds_administrator_role
    changes = world.deps.uow.db.audit_events("member.org_role_changed")  # type: ignore[attr-defined]
    assert [(e.target_id, e.details["after"]) for e in changes] == [
        (str(b.id), {"org_role": "administrator"}),
        (str(a.id), {"org_role": "member"}),
    ]
    # The org role way moves the role too.
    await api.change_member_role(world.principal(b.id), org, a.id, OrgRole.ADMINISTRATOR, CTX)
    assert (await world.snapshot()).members[a.id].holds_administrator_role


async def test_an_invitation_carrying_the_administrator_role_makes_an_administrator(world: OrgWorld) -> None:
    a, _ = await org_with(world, "orders:read")
    c, d = await world.new_user("c"), await world.new_user("d")
    await world.invite_and_accept(a.id, c, OrgRole.MEMBER, [ADMINISTRATOR_ROLE_ID])
    await world.invite_and_accept(a.id, d, OrgRole.ADMINISTRATOR)
    state = await world.snapshot()
    for user in (c, d):
        assert (
            state.members[user.id].org_role is OrgRole.ADMINISTRATOR
            and state.members[user.id].holds_administrator_role
        )


async def test_an_invitation_stops_granting_once_its_inviter_could_not_grant_it(world: OrgWorld) -> None:
    a, _ = await org_with(world, "orders:read")
    api, org = world.api, world.org_id
    deputy = await world.new_user("deputy")
    await world.invite_and_accept(a.id, deputy, OrgRole.ADMINISTRATOR)
    c = await world.new_user("c")
    await api.invite_member(world.principal(deputy.id), org, c.email, OrgRole.ADMINISTRATOR, [], [], CTX)
    await api.change_member_role(world.principal(a.id), org, deputy.id, OrgRole.MEMBER, CTX)
    invitee = world.principal(c.id)
    with pytest.raises(ApplicationError) as error:
        await api.accept_invitation(invitee, mailed_token_of(world, c.email), CTX)
    refused(error, "invitation_exceeds_inviter")
    assert c.id not in (await world.snapshot()).members


def mailed_token_of(world: OrgWorld, address: str) -> str:
    return world.mail_token(address)


# -- the invariant, over random sequences --------------------------------------------------------


async def test_random_operations_by_random_actors_keep_the_org_sound() -> None:
    """After every step: an administrator holding every permission through the Administrator role,
    nobody holding that role without being one, nobody gaining or losing a permission the actor
    lacked, and a refused step changed nothing. Twelve orgs of eighty steps each; together they
    must have tried the refusals this is about, or the test proves nothing."""
    seen: set[str] = set()
    for seed in range(12):
        fakes = make_fakes()
        world = OrgWorld(fakes.deps, wire(fakes.deps), lambda address, f=fakes: mailed_token(f, address))
        rng = random.Random(seed)
        await populate(world, rng)
        operations = RandomOperations(world, rng)
        await operations.run(80)
        seen |= set(operations.outcomes)
    for needed in (
        "set_member_role:ok",
        "set_member_role:grant_exceeds_own",
        "set_group_role:grant_exceeds_own",
        "update_role:grant_exceeds_own",
        "delete_role:grant_exceeds_own",
        "set_member_role:org_admin_required",
        "remove_member:last_administrator",
        "change_member_role:ok",
        "invite:ok",
    ):
        assert needed in seen, (needed, sorted(seen))
