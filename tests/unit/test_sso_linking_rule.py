"""The linking rule and the other pure SSO rules: which email a provider vouches for, what a
sign-in does with it, what names an identity, and which `return_to` stays on the frontend."""

import uuid

import pytest

from domain.sso import (
    DEFAULT_RETURN_TO,
    LinkOutcome,
    SsoClaims,
    SsoProvider,
    decide_sign_in,
    has_password,
    identity_key,
    safe_return_to,
    vouched_email,
)

EMAIL = "dana@example.com"
GOOGLE, AZURE, OIDC = SsoProvider.GOOGLE, SsoProvider.AZURE, SsoProvider.OIDC


def claims(**values: object) -> SsoClaims:
    base: dict[str, object] = {"issuer": "https://idp.example", "subject": "sub-1", "email": EMAIL}
    return SsoClaims(**{**base, **values})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("provider", "values", "vouched"),
    [
        (GOOGLE, {"email_verified": True}, True),
        (GOOGLE, {"email_verified": False}, False),
        (GOOGLE, {"email_verified": "true"}, False),  # only the JSON true
        (GOOGLE, {"email_verified": 1}, False),
        (GOOGLE, {}, False),
        (GOOGLE, {"xms_edov": True}, False),  # Azure's claim means nothing elsewhere
        (OIDC, {"email_verified": True}, True),
        (OIDC, {"email_verified": None}, False),
        (AZURE, {"xms_edov": True}, True),
        (AZURE, {}, False),  # nOAuth: Azure's plain email is whatever the tenant typed
        (AZURE, {"email_verified": True}, False),  # never Azure's word through another claim
        (AZURE, {"xms_edov": "true"}, False),
        (AZURE, {"xms_edov": False}, False),
        (GOOGLE, {"email_verified": True, "email": None}, False),
    ],
)
def test_which_email_a_provider_vouches_for(
    provider: SsoProvider, values: dict[str, object], vouched: bool
) -> None:
    assert (vouched_email(provider, claims(**values)) is not None) is vouched


def test_a_known_link_signs_in_whatever_the_email_says() -> None:
    linked, other = uuid.uuid4(), uuid.uuid4()
    decision = decide_sign_in(AZURE, claims(), linked_user=linked, user_with_email=other)
    assert (decision.outcome, decision.user_id) == (LinkOutcome.SIGN_IN, linked)


def test_a_vouched_email_links_the_existing_account() -> None:
    user = uuid.uuid4()
    decision = decide_sign_in(GOOGLE, claims(email_verified=True), None, user)
    assert (decision.outcome, decision.user_id) == (LinkOutcome.LINK_AND_SIGN_IN, user)


@pytest.mark.parametrize(
    ("provider", "values"),
    [(AZURE, {}), (AZURE, {"email_verified": True}), (GOOGLE, {"email_verified": False}), (OIDC, {})],
)
def test_an_unvouched_email_of_an_existing_account_requires_a_password_login(
    provider: SsoProvider, values: dict[str, object]
) -> None:
    user = uuid.uuid4()
    decision = decide_sign_in(provider, claims(**values), None, user)
    assert decision.outcome is LinkOutcome.REQUIRE_LOGIN


@pytest.mark.parametrize(("values", "verified"), [({"xms_edov": True}, True), ({}, False)])
def test_a_new_account_is_verified_on_the_same_rule(values: dict[str, object], verified: bool) -> None:
    decision = decide_sign_in(AZURE, claims(**values), None, None)
    assert decision.outcome is LinkOutcome.CREATE and decision.email_verified is verified


def test_azure_identities_are_tenant_and_object_id() -> None:
    key = identity_key(AZURE, claims(tenant_id="t-1", object_id="o-1", subject="pairwise"))
    assert (key.issuer, key.subject) == ("azure-tenant:t-1", "o-1")
    with pytest.raises(ValueError):
        identity_key(AZURE, claims(tenant_id=None, object_id="o-1"))
    google = identity_key(GOOGLE, claims())
    assert (google.issuer, google.subject) == ("https://idp.example", "sub-1")


@pytest.mark.parametrize("good", ["/", "/dashboard", "/orgs/1?tab=2#x", "/a/b/c%2F"])
def test_return_to_paths_on_the_frontend(good: str) -> None:
    assert safe_return_to(good) == good


@pytest.mark.parametrize(
    "bad",
    [
        "https://evil.example",
        "//evil.example",
        "/\\evil.example",
        "\\evil",
        "/\t/evil.example",
        "/x\n",
        "evil",
        "javascript:alert(1)",
        "/" + "a" * 600,
        "/ /evil",
        "/\u202eevil",
        "/\u200b/x",
        "/caf\u00e9",
    ],
)
def test_return_to_refuses_anything_that_could_leave(bad: str) -> None:
    assert safe_return_to(bad) is None


def test_no_return_to_is_the_root() -> None:
    assert safe_return_to(None) == DEFAULT_RETURN_TO == safe_return_to("")


def test_sso_only_and_closed_accounts_have_no_password() -> None:
    assert not has_password("!sso-only") and not has_password("!closed") and not has_password("")
    assert has_password("$argon2id$v=19$m=19456,t=2,p=1$abc$def")
