"""SSO settings: exact names, TLS issuers in production, secrets only from the keyring there."""

import pytest

from tests.unit.test_settings import PRODUCTION, load, refusal

GOOGLE = {
    "BULWARK_SSO_GOOGLE_CLIENT_ID": "g-client",
    "BULWARK_SSO_REDIRECT_BASE_URL": "https://api.example.com",
}


def test_a_provider_is_on_when_its_client_id_is_set() -> None:
    settings = load(
        {
            "BULWARK_SSO_GOOGLE_CLIENT_ID": "g",
            "BULWARK_SSO_AZURE_CLIENT_ID": "a",
            "BULWARK_SSO_AZURE_TENANT": "11111111-1111-4111-8111-111111111111",
            "BULWARK_SSO_OIDC_ISSUER": "https://idp.example.com/realms/x",
            "BULWARK_SSO_OIDC_CLIENT_ID": "o",
            "BULWARK_SSO_OIDC_NAME": "Acme",
        }
    )
    assert settings.sso_providers_on == ("google", "azure", "oidc")
    assert load({}).sso_providers_on == ()
    assert load({}).sso_google_issuer == "https://accounts.google.com"
    assert load({}).sso_azure_authority == "https://login.microsoftonline.com"


def test_production_takes_sso_with_tls_and_no_secret_in_the_environment() -> None:
    assert load({**PRODUCTION, **GOOGLE}).sso_providers_on == ("google",)
    for provider in ("GOOGLE", "AZURE", "OIDC"):
        message = refusal({**PRODUCTION, **GOOGLE, f"BULWARK_SSO_{provider}_CLIENT_SECRET": "s3cret"})
        assert f"BULWARK_SSO_{provider}_CLIENT_SECRET" in message
    without_base = {k: v for k, v in GOOGLE.items() if k != "BULWARK_SSO_REDIRECT_BASE_URL"}
    assert "BULWARK_SSO_REDIRECT_BASE_URL" in refusal({**PRODUCTION, **without_base})


@pytest.mark.parametrize(
    ("variable", "plain"),
    [
        ("BULWARK_SSO_GOOGLE_ISSUER", "http://127.0.0.1:9000/google"),
        ("BULWARK_SSO_AZURE_AUTHORITY", "http://127.0.0.1:9000/azure"),
        ("BULWARK_SSO_OIDC_ISSUER", "http://127.0.0.1:9000/oidc"),
        ("BULWARK_SSO_REDIRECT_BASE_URL", "http://api.example.com"),
    ],
)
def test_plain_http_issuers_only_outside_production(variable: str, plain: str) -> None:
    assert getattr(load({variable: plain}), variable.removeprefix("BULWARK_").lower()) == plain
    assert variable in refusal({**PRODUCTION, **GOOGLE, variable: plain})
    assert variable in refusal({variable: "ftp://x.example"})


def test_a_generic_provider_needs_its_issuer_and_azure_a_sane_tenant() -> None:
    assert "BULWARK_SSO_OIDC_ISSUER" in refusal({"BULWARK_SSO_OIDC_CLIENT_ID": "o"})
    assert "BULWARK_SSO_AZURE_TENANT" in refusal(
        {"BULWARK_SSO_AZURE_CLIENT_ID": "a", "BULWARK_SSO_AZURE_TENANT": "../evil"}
    )
