"""The whole happy path once per backend: register, verify, login, /me, refresh, logout."""

import re

from tests.e2e.conftest import Service

PASSWORD = "correct horse battery staple 42"


def last_link_token(service: Service, kind: str) -> str:
    mailer = service.container.mailer
    body = mailer.messages[-1].body  # type: ignore[attr-defined]
    match = re.search(rf"/{kind}\?token=([A-Za-z0-9_-]+)", body)
    assert match, body
    return match.group(1)


async def test_register_verify_login_refresh_logout(service: Service) -> None:
    client = service.client
    r = await client.post(
        "/api/v1/auth/register",
        json={"email": "Alice@Example.com", "password": PASSWORD, "display_name": "Alice"},
    )
    assert r.status_code == 202, r.text
    assert r.json() == {"status": "verification_sent"}
    r = await client.post("/api/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD})
    assert r.status_code == 403 and r.json()["code"] == "email_not_verified", r.text
    token = last_link_token(service, "verify-email")
    r = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert r.status_code == 200, r.text
    r = await client.post("/api/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    access = body["access_token"]
    r = await client.get("/api/v1/me", headers={"authorization": f"Bearer {access}"})
    assert r.status_code == 200, r.text
    assert r.json()["user"]["email"] == "alice@example.com"
    r = await client.post("/api/v1/auth/refresh")
    assert r.status_code == 200, r.text
    access2 = r.json()["access_token"]
    r = await client.post("/api/v1/auth/logout", headers={"authorization": f"Bearer {access2}"})
    assert r.status_code == 204, r.text
    r = await client.get("/api/v1/me", headers={"authorization": f"Bearer {access2}"})
    assert r.status_code == 401 and r.json()["code"] == "invalid_token", r.text
