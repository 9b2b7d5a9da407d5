"""Subscription plans: which exist, and which of them are paid for. The operator names them
(BULWARK_PLANS, BULWARK_PAYING_PLANS); every account is on exactly one, `free` until changed."""

import re
from dataclasses import dataclass

DEFAULT_PLAN = "free"
_PLAN_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")  # fits the users.plan column (40)


class PlanCatalogError(ValueError):
    """The configured plans are not a usable catalogue."""


@dataclass(frozen=True)
class PlanCatalog:
    plans: tuple[str, ...]
    paying: frozenset[str]

    def __post_init__(self) -> None:
        for name in self.plans:
            if not _PLAN_NAME.fullmatch(name):
                raise PlanCatalogError(f"{name!r} is not a plan name ([a-z][a-z0-9_-]*, at most 40)")
        if len(set(self.plans)) != len(self.plans):
            raise PlanCatalogError("a plan is named twice")
        # Every account starts on the default plan (the column's default), so it must stay known.
        if DEFAULT_PLAN not in self.plans:
            raise PlanCatalogError(f"the plans must include {DEFAULT_PLAN!r}, every new account's plan")
        unknown = sorted(self.paying - set(self.plans))
        if unknown:
            raise PlanCatalogError(f"paying plans {unknown} are not among the plans")
        if DEFAULT_PLAN in self.paying:
            raise PlanCatalogError(f"{DEFAULT_PLAN!r} is every new account's plan: it cannot be a paying one")

    @classmethod
    def parse(cls, plans: str, paying: str) -> "PlanCatalog":
        """From the comma-separated settings (blanks around names ignored)."""
        return cls(_names(plans), frozenset(_names(paying)))

    def is_known(self, plan: str) -> bool:
        return plan in self.plans

    def is_paying(self, plan: str) -> bool:
        return plan in self.paying


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())
