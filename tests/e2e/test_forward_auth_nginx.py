"""The shipped nginx forward-auth example (deploy/nginx/bulwark-forward-auth.conf), run by a real
nginx on loopback in front of a stand-in service, with Bulwark served over a real socket. nginx
comes from Debian's package; without it the test is skipped with the reason shown (a failure
under CI=true)."""

import asyncio
import dataclasses
import json
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from granian.constants import Interfaces
from granian.server.embed import Server

from entrypoints.app import create_asgi
from entrypoints.composition import build_container
from entrypoints.settings import Settings
from tests.conftest import IN_CI
from tests.e2e.conftest import FRONTEND, Service
from tests.e2e.identity_helpers import FAST_ARGON2
from tests.e2e.test_orgs_and_roles import create_org, join, new_user

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "bulwark-forward-auth.conf"
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def echo_service(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The protected service: answers with the X-Bulwark-* headers nginx handed it."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    seen = {k.decode(): v.decode() for k, v in scope["headers"] if k.startswith(b"x-bulwark-")}
    body = json.dumps(seen).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})


@dataclass
class Gateway:
    url: str
    service: Service


async def wait_listening(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture
async def gateway(embedded_settings: Settings, tmp_path: Path) -> AsyncIterator[Gateway]:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        message = "nginx is not installed (Debian package `nginx`; .ci/run installs it)"
        if IN_CI:
            pytest.fail(message + "; under CI=true that is a failure", pytrace=False)
        pytest.skip(message)
    settings = dataclasses.replace(embedded_settings, **FAST_ARGON2)
    container = build_container(settings)
    bulwark_port, service_port, gateway_port = free_port(), free_port(), free_port()
    servers = [
        Server(create_asgi(container), address="127.0.0.1", port=bulwark_port, interface=Interfaces.ASGI),
        Server(echo_service, address="127.0.0.1", port=service_port, interface=Interfaces.ASGI),
    ]
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    conf = tmp_path / "nginx.conf"
    example = EXAMPLE.read_text().replace("listen 8080;", f"listen 127.0.0.1:{gateway_port};")
    (tmp_path / "forward-auth.conf").write_text(example)
    shutil.copy(
        EXAMPLE.parent / "bulwark-forward-auth-pass.conf", tmp_path / "bulwark-forward-auth-pass.conf"
    )
    conf.write_text(
        f"""daemon off;
master_process off;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body; proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fcgi; uwsgi_temp_path {tmp_path}/uwsgi; scgi_temp_path {tmp_path}/scgi;
    upstream bulwark {{ server 127.0.0.1:{bulwark_port}; }}
    upstream platform_service {{ server 127.0.0.1:{service_port}; }}
    include {tmp_path}/forward-auth.conf;
}}
"""
    )
    process = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp_path)], stderr=subprocess.PIPE)
    try:
        await wait_listening(bulwark_port)
        await wait_listening(service_port)
        await wait_listening(gateway_port)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{bulwark_port}", headers={"origin": FRONTEND}
        ) as api:
            yield Gateway(f"http://127.0.0.1:{gateway_port}", Service(container, api))
    finally:
        process.terminate()
        process.wait(timeout=10)
        for server in servers:
            server.stop()  # type: ignore[no-untyped-call]
        await asyncio.wait(tasks, timeout=10)


async def test_nginx_lets_through_only_what_bulwark_vouches_for(gateway: Gateway) -> None:
    actor = await new_user(gateway.service)
    created = await gateway.service.client.post(
        f"/api/v1/orgs/{actor.org_id}/bridges", json={"name": "EA"}, headers=actor.headers
    )
    key = created.json()["key"]
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        assert (await client.get("/positions")).status_code == 401
        assert (
            await client.get("/positions", headers={"authorization": "Bearer not.a.token"})
        ).status_code == 401
        r = await client.get(
            "/positions", headers={**actor.headers, "x-bulwark-user": "spoofed", "x-bulwark-permission": ""}
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"x-bulwark-user": actor.user_id, "x-bulwark-org": actor.org_id}
        r = await client.get("/orders/new", headers=actor.headers)  # the location asks for orders:create
        assert r.status_code == 200  # the org's creator holds every permission
        r = await client.get("/positions", headers={"x-api-key": key})
        assert r.status_code == 200 and r.json() == {
            "x-bulwark-org": actor.org_id,
            "x-bulwark-bridge": created.json()["bridge"]["id"],
        }
        assert (await client.get("/orders/new", headers={"x-api-key": key})).status_code == 403
        _, admin = await create_org(gateway.service, actor)
        member = await join(gateway.service, admin, await new_user(gateway.service, "member"))
        assert (await client.get("/positions", headers=member.headers)).status_code == 200
        assert (await client.get("/orders/new", headers=member.headers)).status_code == 403
        # A client cannot lower what a path asks for by sending the header itself.
        lowered = {**member.headers, "x-bulwark-permission": "reports:read"}
        assert (await client.get("/orders/new", headers=lowered)).status_code == 403
        # Nor reach a path by spelling it otherwise: nginx normalises before it matches.
        for spelling in ("/orders", "//orders/x", "/%6Frders/x", "/./orders/x", "/positions/../orders/x"):
            r = await client.get(gateway.url + spelling, headers=member.headers)  # the path as written
            assert r.status_code == 403, (spelling, r.status_code)
        # A path nobody listed is refused, whoever asks.
        for unlisted in ("/Orders/x", "/admin", "/"):
            assert (await client.get(gateway.url + unlisted, headers=actor.headers)).status_code == 404, (
                unlisted
            )
        await gateway.service.client.delete(
            f"/api/v1/orgs/{actor.org_id}/bridges/{created.json()['bridge']['id']}",
            headers={**actor.headers, "content-length": "0"},
        )
        assert (await client.get("/positions", headers={"x-api-key": key})).status_code == 401
