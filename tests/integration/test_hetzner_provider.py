"""The hetzner egress provider against the loopback Hetzner API simulator: real HTTP, lost answers,
rate limits, failing deletes, a wrong token, pagination, and IPs that are not ours."""

import logging
import time
from collections.abc import AsyncIterator

import pytest

from adapters.egress.hetzner.api_client import HetznerApiClient, RetryPolicy
from adapters.egress.hetzner.errors import HetznerApiError, NotOurPrimaryIp
from adapters.egress.hetzner.primary_ips import HetznerPrimaryIpProvider
from application.ports.egress_provider import (
    EgressAttachRefused,
    EgressProviderExhausted,
    EgressProviderUnavailable,
    ProviderAddress,
)
from tests.hetzner_simulator import HetznerSimulator, SimServer

TOKEN = "hc-TESTtoken-7f3a9b1c5d"
EGRESS_HOST = 1001
OURS = {"managed-by": "bulwark"}
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=3.0, action_poll=0.01, action_timeout=5.0)


@pytest.fixture
async def sim() -> AsyncIterator[HetznerSimulator]:
    servers = (SimServer(id=EGRESS_HOST), SimServer(id=2002))
    async with HetznerSimulator(token=TOKEN, servers=servers) as simulator:
        yield simulator


def provider(
    sim: HetznerSimulator, *, token: str = TOKEN, retry: RetryPolicy = FAST
) -> HetznerPrimaryIpProvider:
    api = HetznerApiClient(base_url=sim.base_url, token=token, retry=retry)
    return HetznerPrimaryIpProvider(api, server_id=EGRESS_HOST, datacenter="fsn1-dc14")


def labelled(sim: HetznerSimulator, label: str) -> list[dict[str, object]]:
    return [ip for ip in sim.primary_ips if ip["labels"].get("bulwark-egress") == label]


# --- acquire: created once, adopted after a lost answer ---------------------------------------


async def test_acquire_creates_an_unassigned_ipv4_labelled_as_ours(sim: HetznerSimulator) -> None:
    address = await provider(sim).acquire("user-1")
    (ip,) = sim.primary_ips
    assert address == ProviderAddress(
        ip["ip"], str(ip["id"]), {"managed-by": "bulwark", "bulwark-egress": "user-1"}
    )
    assert ip["type"] == "ipv4" and ip["assignee_id"] is None and ip["auto_delete"] is False
    assert ip["datacenter"]["name"] == "fsn1-dc14" and ip["name"] == "bulwark-egress-user-1"


async def test_a_create_whose_answer_was_lost_is_adopted_by_label_not_leaked(sim: HetznerSimulator) -> None:
    sim.lose_create_answers = 1
    address = await provider(sim).acquire("user-2")
    assert [ip["ip"] for ip in labelled(sim, "user-2")] == [address.address]
    assert len(sim.primary_ips) == 1
    assert [r.status for r in sim.calls("POST")] == [0]  # one create, its answer lost; no second one


async def test_acquire_again_after_a_crash_adopts_the_address_made_the_first_time(
    sim: HetznerSimulator,
) -> None:
    first = await provider(sim).acquire("user-3")
    # A new process (the ledger never recorded `first`) asks again for the same label.
    again = await provider(sim).acquire("user-3")
    assert again == first and len(sim.primary_ips) == 1 and len(sim.calls("POST")) == 1


async def test_a_create_answered_with_5xx_is_looked_up_before_it_is_tried_again(
    sim: HetznerSimulator,
) -> None:
    sim.fail_creates = 2
    address = await provider(sim).acquire("user-4")
    assert [ip["ip"] for ip in sim.primary_ips] == [address.address]
    assert [r.status for r in sim.calls("POST")] == [503, 503, 201]
    # every create was preceded by a look-up by label (the first also by a look at the host)
    calls = [(r.method, r.path.split("?")[0]) for r in sim.requests]
    lookup, room, create = (
        ("GET", "/v1/primary_ips"),
        ("GET", "/v1/servers/1001"),
        ("POST", "/v1/primary_ips"),
    )
    assert calls == [lookup, room, create, lookup, create, lookup, create]


async def test_a_quota_reached_is_exhaustion_not_an_outage(sim: HetznerSimulator) -> None:
    sim.quota = 1
    await provider(sim).acquire("user-5")
    with pytest.raises(EgressProviderExhausted, match="resource_limit_exceeded"):
        await provider(sim).acquire("user-6")
    assert len(sim.primary_ips) == 1


async def test_a_label_hetzner_cannot_store_is_refused_before_any_call(sim: HetznerSimulator) -> None:
    with pytest.raises(ValueError, match="not a Hetzner label value"):
        await provider(sim).acquire("user 7/../x")
    assert sim.requests == []


# --- retries: 429 with RateLimit-Reset, 5xx, bounded -------------------------------------------


async def test_a_rate_limited_call_waits_for_ratelimit_reset_then_succeeds(sim: HetznerSimulator) -> None:
    await provider(sim).acquire("user-8")
    until = sim.throttle(1.2)
    sim.requests.clear()
    owned = await provider(sim).owned()  # backoff alone (10-80 ms over 4 tries) would give up
    assert len(owned) == 1
    assert [r.status for r in sim.requests][-1] == 200 and sim.requests[-1].time >= until
    assert all(r.status == 429 for r in sim.requests[:-1])


async def test_retries_are_bounded_then_the_provider_is_unavailable(sim: HetznerSimulator) -> None:
    sim.throttle(60)
    short = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
    started = time.monotonic()
    with pytest.raises(EgressProviderUnavailable, match=r"429 rate_limit_exceeded.*3 attempts"):
        await provider(sim, retry=short).owned()
    assert len(sim.requests) == 3 and time.monotonic() - started < 2


async def test_5xx_are_retried_with_backoff(sim: HetznerSimulator) -> None:
    sim.fail_requests = 2
    assert await provider(sim).owned() == []
    assert [r.status for r in sim.requests] == [503, 503, 200]
    gaps = [b.time - a.time for a, b in zip(sim.requests, sim.requests[1:], strict=False)]
    # equal jitter: at least half of base_delay * 2**(retry-1) before each retry
    assert gaps[0] >= FAST.base_delay / 2 and gaps[1] >= FAST.base_delay


async def test_a_connection_refused_is_retried_then_unavailable() -> None:
    async with HetznerSimulator(token=TOKEN) as gone:
        url = gone.base_url
    api = HetznerApiClient(base_url=url, token=TOKEN, retry=RetryPolicy(attempts=2, base_delay=0.01))
    with pytest.raises(EgressProviderUnavailable, match=r"no answer.*2 attempts"):
        await HetznerPrimaryIpProvider(api, server_id=EGRESS_HOST, datacenter="fsn1-dc14").owned()


# --- the token --------------------------------------------------------------------------------


async def test_a_wrong_token_is_a_clear_401_not_retried_and_the_token_is_never_shown(
    sim: HetznerSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "hc-WRONGtoken-000000"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(HetznerApiError) as raised:
        await provider(sim, token=wrong).acquire("user-9")
    assert raised.value.status == 401 and raised.value.code == "unauthorized"
    assert "invalid or unknown token" in str(raised.value)
    assert len(sim.requests) == 1 and sim.primary_ips == []
    assert wrong not in str(raised.value) and wrong not in caplog.text and TOKEN not in caplog.text
    assert wrong not in repr(provider(sim, token=wrong)._api)


# --- owned(): ours only, every page ------------------------------------------------------------


async def test_owned_lists_every_page_of_our_ips_and_nothing_else(sim: HetznerSimulator) -> None:
    for n in range(120):
        sim.create_behind_back(labels={**OURS, "bulwark-egress": f"u{n}"})
    for n in range(3):
        sim.create_behind_back(labels={"team": "web"}, name=f"web-{n}")
    owned = await provider(sim).owned()
    assert len(owned) == 120 and len({a.address for a in owned}) == 120
    assert len(sim.calls("GET")) == 3  # 50 + 50 + 20


async def test_an_ip_created_behind_the_ledgers_back_shows_in_owned(sim: HetznerSimulator) -> None:
    recorded = await provider(sim).acquire("user-10")
    stray = sim.create_behind_back(labels={**OURS, "bulwark-egress": "crashed-before-recording"})
    owned = {a.address for a in await provider(sim).owned()}
    assert owned == {recorded.address, stray["ip"]}  # the orphan audit subtracts the ledger's


# --- attach / detach ---------------------------------------------------------------------------


async def test_attach_assigns_to_the_egress_host_and_both_are_idempotent(sim: HetznerSimulator) -> None:
    hetzner = provider(sim)
    address = await hetzner.acquire("user-11")
    await hetzner.attach(address)
    await hetzner.attach(address)
    assert sim.primary_ips[0]["assignee_id"] == EGRESS_HOST
    assert len(sim.calls("POST", "/v1/primary_ips/")) == 1  # the second attach saw it done
    await hetzner.detach(address)
    await hetzner.detach(address)
    assert sim.primary_ips[0]["assignee_id"] is None
    assert len(sim.calls("POST", f"/v1/primary_ips/{address.provider_ref}/actions/unassign")) == 1


async def test_attach_waits_for_the_action_to_finish(sim: HetznerSimulator) -> None:
    sim.action_reads_to_finish = 3
    hetzner = provider(sim)
    address = await hetzner.acquire("user-12")
    await hetzner.attach(address)
    assert len(sim.calls("GET", "/v1/actions/")) == 3


async def test_hetzner_refusals_on_assign_say_what_to_fix(sim: HetznerSimulator) -> None:
    hetzner = provider(sim)
    first, second = await hetzner.acquire("user-13"), await hetzner.acquire("user-14")
    sim.servers[EGRESS_HOST].status = "running"
    # The host refuses it: EgressAttachRefused (the ledger gives such an address back).
    with pytest.raises(EgressAttachRefused, match="server_not_stopped"):
        await hetzner.attach(first)
    sim.servers[EGRESS_HOST].status = "off"
    await hetzner.attach(first)
    # Hetzner's documented limit: one Primary IPv4 per server.
    with pytest.raises(EgressAttachRefused, match="server_has_ipv4"):
        await hetzner.attach(second)


async def test_an_ip_assigned_to_another_server_is_not_taken_over(sim: HetznerSimulator) -> None:
    hetzner = provider(sim)
    address = await hetzner.acquire("user-15")
    sim.primary_ips[0]["assignee_id"] = 2002
    with pytest.raises(NotOurPrimaryIp, match="assigned to server 2002"):
        await hetzner.attach(address)
    assert sim.primary_ips[0]["assignee_id"] == 2002


# --- release -----------------------------------------------------------------------------------


async def test_release_unassigns_then_deletes_and_is_idempotent(sim: HetznerSimulator) -> None:
    hetzner = provider(sim)
    address = await hetzner.acquire("user-16")
    await hetzner.attach(address)
    assert await hetzner.release(address) is True
    assert sim.primary_ips == []
    assert await hetzner.release(address) is True  # already gone counts
    assert len(sim.calls("DELETE")) == 1


async def test_a_failing_delete_is_retried_until_it_succeeds(sim: HetznerSimulator) -> None:
    hetzner = provider(sim)
    address = await hetzner.acquire("user-17")
    sim.fail_deletes = 2
    assert await hetzner.release(address) is True
    assert [r.status for r in sim.calls("DELETE")] == [503, 503, 204] and sim.primary_ips == []


async def test_a_delete_failing_past_the_retries_leaves_the_ip_and_a_later_release_finishes(
    sim: HetznerSimulator,
) -> None:
    hetzner = provider(sim)
    address = await hetzner.acquire("user-18")
    sim.fail_deletes = 10
    with pytest.raises(EgressProviderUnavailable, match="503"):
        await hetzner.release(address)
    assert [ip["ip"] for ip in sim.primary_ips] == [address.address]  # still there: stays draining
    sim.fail_deletes = 0
    assert await hetzner.release(address) is True and sim.primary_ips == []


async def test_an_ip_not_labelled_as_ours_is_never_unassigned_nor_deleted(sim: HetznerSimulator) -> None:
    # The egress host's own address is a Primary IP too; a confused ledger row must not kill it.
    own = sim.create_behind_back(labels={"role": "egress-host"})
    own["assignee_id"] = EGRESS_HOST
    address = ProviderAddress(own["ip"], str(own["id"]))
    hetzner = provider(sim)
    for attempt in (hetzner.release(address), hetzner.detach(address)):
        with pytest.raises(NotOurPrimaryIp, match="not labelled managed-by=bulwark"):
            await attempt
    assert sim.primary_ips == [own] and own["assignee_id"] == EGRESS_HOST
    assert sim.calls("DELETE") == [] and sim.calls("POST") == []


async def test_a_ledger_row_naming_another_address_for_the_id_is_refused(sim: HetznerSimulator) -> None:
    hetzner = provider(sim)
    address = await hetzner.acquire("user-19")
    with pytest.raises(NotOurPrimaryIp, match="left alone"):
        await hetzner.release(ProviderAddress("5.75.99.99", address.provider_ref))
    assert len(sim.primary_ips) == 1


async def test_a_delete_whose_answer_was_lost_counts_as_done_when_the_retry_finds_it_gone(
    sim: HetznerSimulator,
) -> None:
    hetzner = provider(sim)
    address = await hetzner.acquire("user-20")
    sim.lose_delete_answers = 1
    assert await hetzner.release(address) is True
    assert [r.status for r in sim.calls("DELETE")] == [0, 404] and sim.primary_ips == []


async def test_a_404_from_a_wrong_api_url_is_an_error_not_an_empty_list(sim: HetznerSimulator) -> None:
    api = HetznerApiClient(base_url=sim.base_url.removesuffix("/v1"), token=TOKEN, retry=FAST)
    with pytest.raises(HetznerApiError, match="404 not_found"):
        await HetznerPrimaryIpProvider(api, server_id=EGRESS_HOST, datacenter="fsn1-dc14").owned()


async def test_a_name_taken_by_an_ip_without_our_labels_is_not_adopted_and_the_error_says_why(
    sim: HetznerSimulator,
) -> None:
    sim.create_behind_back(labels={}, name="bulwark-egress-user-21")
    with pytest.raises(EgressProviderUnavailable, match="without our labels"):
        await provider(sim).acquire("user-21")
    assert len(sim.primary_ips) == 1


async def test_no_address_is_created_for_a_host_that_cannot_take_it(sim: HetznerSimulator) -> None:
    hetzner = provider(sim)
    await hetzner.attach(await hetzner.acquire("user-20"))
    # Hetzner's one Primary IPv4 per server: a second would be billed and never attached.
    with pytest.raises(EgressProviderExhausted, match="holds its one Primary IPv4"):
        await hetzner.acquire("user-21")
    for ip in sim.primary_ips:
        ip["assignee_id"] = None
    sim.servers[EGRESS_HOST].status = "running"  # assigns need it powered off
    with pytest.raises(EgressProviderExhausted, match="powered-off"):
        await hetzner.acquire("user-22")
    assert (
        len(sim.primary_ips) == 1 and len([r for r in sim.calls("POST") if r.path == "/v1/primary_ips"]) == 1
    )
