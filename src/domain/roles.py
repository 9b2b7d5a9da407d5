"""Roles as sets of `resource:action` permissions (catalog and system roles live in domain.permissions)."""

from dataclasses import dataclass, field
from uuid import UUID


@dataclass(frozen=True)
class Permission:
    resource: str
    action: str

    def __str__(self) -> str:
        return f"{self.resource}:{self.action}"

    @classmethod
    def parse(cls, text: str) -> "Permission":
        resource, sep, action = text.partition(":")
        if not sep or not resource or not action:
            raise ValueError(f"permission must look like resource:action, got {text!r}")
        return cls(resource, action)


@dataclass
class Role:
    id: UUID
    name: str
    permissions: frozenset[Permission] = field(default_factory=frozenset)
    org_id: UUID | None = None  # None for system roles, shared by every org
    system: bool = False
    description: str = ""
