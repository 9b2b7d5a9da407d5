"""Who sees the admin panel: the allowlist by the one client-IP function, and which paths are the
panel's as Litestar's router would see them."""

from typing import Any

import pytest

from entrypoints.http.admin_allowlist import AdminAllowlist, is_admin_path, routed_path
from entrypoints.http.client_ip import parse_networks

PROXIES = parse_networks(["10.0.0.0/8"])
LOOPBACK = AdminAllowlist(["127.0.0.0/8", "::1/128"], PROXIES)


def scope(peer: str | None, *forwarded: str, path: str = "/", root_path: str = "") -> dict[str, Any]:
    return {
        "type": "http",
        "path": path,
        "root_path": root_path,
        "client": (peer, 443) if peer else None,
        "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded],
    }


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.200.0.9", "::1", "::ffff:127.0.0.1"])
def test_loopback_is_allowed_in_every_spelling(peer: str) -> None:
    assert LOOPBACK.allows(scope(peer))


@pytest.mark.parametrize("peer", ["203.0.113.7", "::2", "::ffff:203.0.113.7", None, "not-an-ip"])
def test_anything_else_is_not(peer: str | None) -> None:
    assert not LOOPBACK.allows(scope(peer))


def test_x_forwarded_for_counts_only_from_a_trusted_proxy() -> None:
    assert not LOOPBACK.allows(scope("203.0.113.7", "127.0.0.1"))  # the client's own claim
    assert LOOPBACK.allows(scope("10.1.2.3", "127.0.0.1"))  # the proxy's word
    assert not LOOPBACK.allows(scope("10.1.2.3", "127.0.0.1, 203.0.113.9"))  # right-most untrusted


def test_a_garbled_chain_from_an_allowed_proxy_allows_nobody() -> None:
    """A proxy inside the allowlist that forwards something unreadable (`ip:port`, a bracketed
    IPv6) must not let its clients in on its own address."""
    inside = AdminAllowlist(["10.0.0.0/8"], PROXIES)
    assert inside.allows(scope("10.1.2.3"))  # the proxy itself, asking for itself
    for garbled in ("203.0.113.9:51234", "[2001:db8::1]", "not-an-ip"):
        assert not inside.allows(scope("10.1.2.3", garbled)), garbled


def test_an_empty_allowlist_allows_nobody() -> None:
    off = AdminAllowlist([], PROXIES)
    assert off.is_off and not off.allows(scope("127.0.0.1"))


@pytest.mark.parametrize(
    ("path", "root_path", "admin"),
    [
        ("/api/admin/v1", "", True),
        ("/api/admin/v1/", "", True),
        ("/api/admin/v1/orgs/x/disable", "", True),
        ("//api/admin/v1/schema", "", True),
        ("/api//admin/v1/schema/", "", True),
        ("/mounted/api/admin/v1/schema", "/mounted", True),
        ("/api/admin/v10", "", False),
        ("/api/admin/v1x/schema", "", False),
        ("/api/v1/admin/orgs", "", False),
        ("/API/admin/v1/schema", "", False),  # Litestar routes case-sensitively: an unknown route
        ("/schema", "", False),
    ],
)
def test_admin_paths_are_recognised_as_the_router_sees_them(path: str, root_path: str, admin: bool) -> None:
    assert is_admin_path(routed_path(scope("127.0.0.1", path=path, root_path=root_path))) is admin


def test_the_app_refuses_to_start_if_a_route_could_answer_the_hidden_path() -> None:
    from litestar import Litestar, get
    from litestar.params import FromPath

    from entrypoints.app import check_unknown_route_path

    @get("/{anything:str}", sync_to_thread=False)
    def catch_all(anything: FromPath[str]) -> str:
        return anything

    check_unknown_route_path(Litestar(route_handlers=[], logging_config=None))
    with pytest.raises(RuntimeError, match="must stay unknown"):
        check_unknown_route_path(Litestar(route_handlers=[catch_all], logging_config=None))


@pytest.mark.parametrize("kind", ["http", "websocket"])
async def test_the_gate_hands_a_hidden_request_on_as_the_unknown_route_and_an_allowed_one_untouched(
    kind: str,
) -> None:
    from entrypoints.http.admin_allowlist import UNKNOWN_ROUTE_PATH
    from entrypoints.middleware.admin_gate import AdminGateMiddleware

    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    async def nothing() -> Any:
        return {}

    async def ignore(message: Any) -> None:
        return None

    gate = AdminGateMiddleware(app, LOOPBACK)
    outside = {**scope("203.0.113.7", path="/m/api/admin/v1/schema", root_path="/m"), "type": kind}
    await gate(outside, nothing, ignore)
    assert (seen[-1]["path"], seen[-1]["raw_path"]) == (
        "/m" + UNKNOWN_ROUTE_PATH,
        b"/m" + UNKNOWN_ROUTE_PATH.encode(),
    )
    assert outside["path"] == "/m/api/admin/v1/schema"  # the caller's scope is not altered
    inside = {**scope("127.0.0.1", path="/api/admin/v1/schema"), "type": kind}
    await gate(inside, nothing, ignore)
    assert seen[-1] is inside
    public = {**scope("203.0.113.7", path="/api/v1/me"), "type": kind}
    await gate(public, nothing, ignore)
    assert seen[-1] is public
