"""The plan catalogue: known plans, paying ones a subset, refused at startup otherwise."""

import dataclasses
from pathlib import Path

import pytest

from domain.plans import PlanCatalog, PlanCatalogError
from entrypoints.settings import Settings, SettingsError, validate


def test_the_default_catalogue_knows_three_plans_two_of_them_paying() -> None:
    catalogue = Settings().plan_catalog
    assert catalogue.plans == ("free", "pro", "desk")
    assert [catalogue.is_paying(p) for p in catalogue.plans] == [False, True, True]
    assert not catalogue.is_known("gold") and not catalogue.is_known("PRO")


@pytest.mark.parametrize(
    ("plans", "paying"),
    [
        ("free,pro", "pro,desk"),  # a paying plan that is no plan
        ("pro,desk", "pro"),  # no free: every new account's plan
        ("free,pro", "free"),  # free cannot be paid for
        ("free,free", ""),
        ("free,Pro Plan", ""),
    ],
)
def test_an_incoherent_catalogue_is_refused_at_startup(plans: str, paying: str, tmp_path: Path) -> None:
    with pytest.raises(PlanCatalogError):
        PlanCatalog.parse(plans, paying)
    settings = dataclasses.replace(
        Settings(data_dir=tmp_path, frontend_url="https://app.example.com"), plans=plans, paying_plans=paying
    )
    with pytest.raises(SettingsError, match="BULWARK_PLANS"):
        validate(settings)
