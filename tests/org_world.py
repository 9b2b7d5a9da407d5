"""One organisation driven through the real use cases, on whatever storage the test gives them
(the in-memory fakes, SQLite, PostgreSQL as the service role): users, invitations accepted,
snapshots of who holds what, and random sequences of member, role and group operations by random
actors, checked after every step against the rules the org must never break."""

import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from adapters.authz.in_process import InProcessAuthzVersions
from adapters.authz.permission_cache import LayeredPermissionCache
from application.authorization import AuthzDeps, group_permissions, load_effective
from application.errors import ApplicationError
from application.identity import IdentityDeps, RequestContext
from application.use_cases.sessions import Principal
from domain.orgs import Organisation, OrgRole
from domain.permissions import (
    ADMINISTRATOR_ROLE_ID,
    CATALOG,
    SYSTEM_ROLE_IDS,
    SystemRole,
    role_permissions,
    system_roles,
)
from domain.users import User
from entrypoints.composition import AuthzApi

CTX = RequestContext(ip="198.51.100.9", user_agent="pytest", request_id="org-world")
ALL = frozenset(str(p) for p in CATALOG)
# A small pool, so that random roles overlap the actors' own rights often, and exceed them often.
POOL = (
    "members:read",
    "members:create",
    "members:update",
    "members:delete",
    "roles:read",
    "roles:create",
    "roles:update",
    "roles:delete",
    "groups:read",
    "groups:create",
    "groups:update",
    "groups:delete",
    "orders:read",
    "orders:create",
    "orders:execute",
    "audit_log:read",
)


def wire(deps: IdentityDeps) -> AuthzApi:
    return AuthzApi.wire(
        AuthzDeps(
            identity=deps, versions=InProcessAuthzVersions(), cache=LayeredPermissionCache(None, "world")
        )
    )


@dataclass(frozen=True)
class Member:
    org_role: OrgRole
    holds_administrator_role: bool
    permissions: frozenset[str]


@dataclass(frozen=True)
class Snapshot:
    """Who is a member with what, and what each holder confers: every member, every role, every
    group (the union of its roles) and every single link (a member's role, a group's role, a
    group's member), so that taking away one link is judged even where another link still grants
    the same permissions, and a change to a group or role nobody holds yet is judged too."""

    members: dict[UUID, Member]
    grants: dict[str, frozenset[str]]


@dataclass
class OrgWorld:
    deps: IdentityDeps
    api: AuthzApi
    mail_token: Callable[[str], str]  # the last invitation token mailed to an address
    org_id: UUID = field(default_factory=uuid.uuid4)
    users: dict[UUID, User] = field(default_factory=dict)
    managers: set[UUID] = field(default_factory=set)
    administrators: set[UUID] = field(default_factory=set)

    def principal(self, user_id: UUID) -> Principal:
        return Principal(user_id, uuid.uuid4(), self.org_id, "user", self.deps.clock.now())

    async def new_user(self, name: str) -> User:
        now = self.deps.clock.now()
        personal = Organisation(id=uuid.uuid4(), name=f"{name}'s organisation", created_at=now, personal=True)
        user = User(
            id=uuid.uuid4(),
            email=f"{name}-{uuid.uuid4().hex[:8]}@example.com",
            display_name=name,
            password_hash="unused",
            pepper_version="p1",
            created_at=now,
            email_verified_at=now,
            default_org_id=personal.id,
        )
        async with self.deps.uow() as uow:
            await uow.orgs.add(personal)
            await uow.users.add(user)
            await uow.commit()
        self.users[user.id] = user
        return user

    async def found(self, owner: User) -> None:
        org = await self.api.create_org(self.principal(owner.id), "World Desk", CTX)
        self.org_id = org.id

    async def invite_and_accept(
        self,
        inviter: UUID,
        user: User,
        org_role: OrgRole = OrgRole.MEMBER,
        role_ids: list[UUID] | None = None,
        group_ids: list[UUID] | None = None,
    ) -> None:
        await self.api.invite_member(
            self.principal(inviter), self.org_id, user.email, org_role, role_ids or [], group_ids or [], CTX
        )
        invitee = Principal(user.id, uuid.uuid4(), user.default_org_id or uuid.uuid4(), "user", None)
        await self.api.accept_invitation(invitee, self.mail_token(user.email), CTX)

    async def snapshot(self) -> Snapshot:
        async with self.deps.uow() as uow:
            members: dict[UUID, Member] = {}
            grants: dict[str, frozenset[str]] = {}
            for membership, user in await uow.authz.members(self.org_id):
                effective = await load_effective(uow, self.org_id, user.id)
                members[user.id] = Member(
                    membership.role,
                    ADMINISTRATOR_ROLE_ID in await uow.authz.member_role_ids(self.org_id, user.id),
                    effective.names,
                )
                grants[f"user:{user.id}"] = effective.names
            roles = {r.id: r for r in [*system_roles(), *await uow.authz.custom_roles(self.org_id)]}

            def names(role_id: UUID) -> frozenset[str]:
                return (
                    frozenset(str(p) for p in role_permissions(roles[role_id]))
                    if role_id in roles
                    else frozenset()
                )

            for role_id in roles:
                grants[f"role:{role_id}"] = names(role_id)
            for user_id in members:
                for role_id in await uow.authz.member_role_ids(self.org_id, user_id):
                    grants[f"user:{user_id}/role:{role_id}"] = names(role_id)
            for group in await uow.authz.groups(self.org_id):
                conferred = frozenset(str(p) for p in await group_permissions(uow, self.org_id, group.id))
                grants[f"group:{group.id}"] = conferred
                for role_id in await uow.authz.group_role_ids(self.org_id, group.id):
                    grants[f"group:{group.id}/role:{role_id}"] = names(role_id)
                for user_id in await uow.authz.group_member_ids(self.org_id, group.id):
                    grants[f"group:{group.id}/user:{user_id}"] = conferred
            return Snapshot(members, grants)

    async def custom_role_ids(self) -> list[UUID]:
        async with self.deps.uow() as uow:
            return [r.id for r in await uow.authz.custom_roles(self.org_id)]

    async def role_ids_of(self, user_id: UUID) -> list[UUID]:
        async with self.deps.uow() as uow:
            return await uow.authz.member_role_ids(self.org_id, user_id)

    async def group_links(self, group_id: UUID) -> tuple[list[UUID], list[UUID]]:
        async with self.deps.uow() as uow:
            return (
                await uow.authz.group_member_ids(self.org_id, group_id),
                await uow.authz.group_role_ids(self.org_id, group_id),
            )

    async def group_ids(self) -> list[UUID]:
        async with self.deps.uow() as uow:
            return [g.id for g in await uow.authz.groups(self.org_id)]


def assert_one_administrator_rule(state: Snapshot, step: str) -> None:
    """At least one administrator; every administrator holds every permission through the
    Administrator role itself; nobody holds that role directly without being an administrator."""
    administrators = [u for u, m in state.members.items() if m.org_role is OrgRole.ADMINISTRATOR]
    assert administrators, f"no administrator left after {step}"
    for user_id, member in state.members.items():
        is_admin = member.org_role is OrgRole.ADMINISTRATOR
        assert is_admin == member.holds_administrator_role, f"{user_id}: {member} after {step}"
        if is_admin:
            assert member.permissions == ALL, f"administrator {user_id} lost rights after {step}"


def assert_within_actor(before: Snapshot, after: Snapshot, actor: UUID, step: str) -> None:
    """No member, group or role gains or loses a permission the actor did not hold before the step."""
    own = before.members[actor].permissions if actor in before.members else frozenset()
    for holder in before.grants.keys() | after.grants.keys():
        had = before.grants.get(holder, frozenset())
        has = after.grants.get(holder, frozenset())
        assert has - had <= own, f"{step}: {holder} gained {sorted(has - had - own)} the actor lacked"
        assert had - has <= own, f"{step}: {holder} lost {sorted(had - has - own)} the actor lacked"


@dataclass
class RandomOperations:
    world: OrgWorld
    rng: random.Random
    outcomes: dict[str, int] = field(default_factory=dict)

    def _permissions(self) -> list[str]:
        return self.rng.sample(POOL, self.rng.randint(0, 4))

    def _role(self, custom: list[UUID]) -> UUID:
        system = list(SYSTEM_ROLE_IDS.values())
        weighted = [*system, *custom, *custom, SYSTEM_ROLE_IDS[SystemRole.ADMINISTRATOR]]
        return self.rng.choice(weighted) if weighted else self.rng.choice(system)

    async def step(self, state: Snapshot) -> tuple[str, UUID, Callable[[], Awaitable[Any]]]:
        """A random operation by a random member, often on an administrator or on a link that
        exists (so that taking away is tried as often as granting), sometimes on someone who left."""
        rng, world, api = self.rng, self.world, self.world.api
        members = list(state.members)
        actor = self.actor(members)
        administrators = [u for u, m in state.members.items() if m.org_role is OrgRole.ADMINISTRATOR]
        target = rng.choice(administrators if rng.random() < 0.3 else [*members, *world.users])
        me, org = world.principal(actor), world.org_id
        roles, groups = await world.custom_role_ids(), await world.group_ids()
        flip = rng.random() < 0.5
        held = await world.role_ids_of(target)
        member_role = rng.choice(held) if held and not flip else self._role(roles)
        choices: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            (
                "change_member_role",
                lambda: api.change_member_role(me, org, target, rng.choice(list(OrgRole)), CTX),
            ),
            ("remove_member", lambda: api.remove_member(me, org, target, CTX)),
            *[("set_member_role", lambda: api.set_member_role(me, org, target, member_role, flip, CTX))] * 3,
            (
                "create_role",
                lambda: api.create_role(me, org, f"r{rng.randrange(10**6)}", "", self._permissions(), CTX),
            ),
            ("create_group", lambda: api.create_group(me, org, f"g{rng.randrange(10**6)}", "", CTX)),
        ]
        if roles:
            role = rng.choice(roles)
            choices += [
                (
                    "update_role",
                    lambda: api.update_role(
                        me,
                        org,
                        role,
                        rng.choice([None, f"n{rng.randrange(10**6)}"]),
                        None,
                        self._permissions(),
                        CTX,
                    ),
                ),
                (
                    "rename_role",
                    lambda: api.update_role(me, org, role, f"n{rng.randrange(10**6)}", None, None, CTX),
                ),
                ("delete_role", lambda: api.delete_role(me, org, role, CTX)),
            ]
        if groups:
            group = rng.choice(groups)
            in_group, group_roles = await world.group_links(group)
            member = rng.choice(in_group) if in_group and not flip else target
            group_role = rng.choice(group_roles) if group_roles and not flip else self._role(roles)
            choices += [
                ("delete_group", lambda: api.delete_group(me, org, group, CTX)),
                *[("set_group_member", lambda: api.set_group_member(me, org, group, member, flip, CTX))] * 2,
                *[("set_group_role", lambda: api.set_group_role(me, org, group, group_role, flip, CTX))] * 2,
            ]
        name, operation = rng.choice(choices)
        return name, actor, operation

    async def invitation(
        self, members: list[UUID], number: int
    ) -> tuple[str, UUID, Callable[[], Awaitable[Any]]]:
        """A newcomer invited by a random member, with random roles and groups, and accepting."""
        rng, world = self.rng, self.world
        actor = self.actor(members)
        newcomer = await world.new_user(f"n{number}")
        roles, groups = await world.custom_role_ids(), await world.group_ids()
        role_ids = [self._role(roles) for _ in range(rng.randint(0, 2))]
        group_ids = rng.sample(groups, min(len(groups), rng.randint(0, 1)))
        org_role = rng.choice([OrgRole.MEMBER, OrgRole.MEMBER, OrgRole.ADMINISTRATOR])

        async def operation() -> None:
            await world.invite_and_accept(actor, newcomer, org_role, role_ids, group_ids)

        return "invite", actor, operation

    def actor(self, members: list[UUID]) -> UUID:
        """Mostly the managers, who hold some rights to manage and lack others."""
        managers = [m for m in members if m in self.world.managers]
        administrators = [m for m in members if m in self.world.administrators]
        pick = self.rng.random()
        if managers and pick < 0.5:
            return self.rng.choice(managers)
        if administrators and pick < 0.7:
            return self.rng.choice(administrators)
        return self.rng.choice(members)

    async def run(self, steps: int) -> None:
        world = self.world
        state = await world.snapshot()
        for number in range(steps):
            world.administrators = {
                u for u, m in state.members.items() if m.org_role is OrgRole.ADMINISTRATOR
            }
            members = list(state.members)
            if self.rng.random() < 0.15:
                name, actor, operation = await self.invitation(members, number)
            else:
                name, actor, operation = await self.step(state)
            step = f"step {number}: {name} by {actor}"
            try:
                await operation()
                outcome = "ok"
            except ApplicationError as error:
                outcome = error.code
            self.outcomes[f"{name}:{outcome}"] = self.outcomes.get(f"{name}:{outcome}", 0) + 1
            after = await world.snapshot()
            if outcome != "ok":
                assert after == state, f"{step} was refused ({outcome}) but changed the org"
            assert_one_administrator_rule(after, step)
            assert_within_actor(state, after, actor, step)
            state = after


async def populate(world: OrgWorld, rng: random.Random) -> None:
    """Two administrators, members holding a mix of system roles, and two managers holding
    different halves of the management permissions with some of the trading ones."""
    owner = await world.new_user("owner")
    await world.found(owner)
    await world.invite_and_accept(owner.id, await world.new_user("deputy"), OrgRole.ADMINISTRATOR)
    for index in range(3):
        role_ids = rng.sample(list(SYSTEM_ROLE_IDS.values())[:-1], 2)
        await world.invite_and_accept(owner.id, await world.new_user(f"m{index}"), OrgRole.MEMBER, role_ids)
    for index in range(2):
        always = ("members:read", "roles:read", "roles:update", "groups:read", "groups:update")
        permissions = [p for p in POOL if p in always or rng.random() < 0.5]
        role = await world.api.create_role(
            world.principal(owner.id), world.org_id, f"Managers {index}", "", permissions, CTX
        )
        manager = await world.new_user(f"manager{index}")
        await world.invite_and_accept(owner.id, manager, OrgRole.MEMBER, [role.id])
        world.managers.add(manager.id)
