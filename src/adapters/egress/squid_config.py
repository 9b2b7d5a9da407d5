"""The static part of squid.conf for the egress gateway, rendered from the settings: Squid asks
Bulwark's helper about every proxy login, the helper's note (`egress_address=...`) selects the
one outgoing address, and CONNECT to the configured broker endpoints is all that is allowed."""

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

NOTE_KEY = "egress_address"
IPV6_DISCARD = "100::1"  # RFC 6666: a discard-only prefix no host holds


@dataclass(frozen=True)
class SquidLayout:
    """Where Squid keeps its files (Debian's defaults; tests use a temporary directory)."""

    pid_file: str = "/run/squid.pid"
    cache_log: str = "/var/log/squid/cache.log"
    access_log: str = "stdio:/var/log/squid/access.log"
    coredump_dir: str = "/var/spool/squid"


@dataclass(frozen=True)
class EgressSquidConfig:
    listen: tuple[str, int]  # workers connect here
    manager_port: int  # the cache manager, on loopback only, on a port of its own
    addresses: Sequence[str]  # the pool: every address a user may be bound to
    targets: Sequence[tuple[str, int]]  # broker host:port pairs CONNECT may reach
    helper_command: str
    credentials_ttl_seconds: int
    helper_children: int = 4
    helper_concurrency: int = 64
    layout: SquidLayout = SquidLayout()


def _acl_name(address: str) -> str:
    return "bulwark_addr_" + address.replace(".", "_")


def _target_acls(index: int, host: str, port: int) -> list[str]:
    try:
        ipaddress.ip_address(host)
        kind = "dst"
    except ValueError:
        # -n: no reverse lookup. Without it Squid matches a CONNECT to an IP literal whose PTR
        # record names the broker, and anyone can set the PTR of an address they rent.
        kind = "dstdomain -n"
    return [
        f"acl bulwark_target_{index}_host {kind} {host}",
        f"acl bulwark_target_{index}_port port {port}",
    ]


def render_squid_conf(config: EgressSquidConfig) -> str:
    if not config.addresses:
        raise ValueError("the egress pool is empty: no tcp_outgoing_address to render")
    if not config.targets:
        raise ValueError("no broker targets: set BULWARK_EGRESS_BROKER_TARGETS")
    for address in config.addresses:
        ipaddress.IPv4Address(address)
    host, port = config.listen
    layout = config.layout
    lines = [
        "# Rendered by `bulwark egress render-squid`: do not edit, render again.",
        f"http_port {host}:{port}",
        f"http_port 127.0.0.1:{config.manager_port} name=bulwark_manager",
        "visible_hostname bulwark-egress",
        f"pid_filename {layout.pid_file}",
        f"cache_log {layout.cache_log}",
        f"access_log {layout.access_log}",
        f"coredump_dir {layout.coredump_dir}",
        "",
        "# A tunnel relay, nothing else: no cache, no identifying headers.",
        "cache deny all",
        "cache_mem 0 MB",
        "via off",
        "forwarded_for delete",
        "",
        "# Every proxy login is asked of Bulwark's helper; an answer is reused at most",
        f"# {config.credentials_ttl_seconds} s (less than a credential lives; a detach waits it out).",
        f"auth_param basic program {config.helper_command}",
        f"auth_param basic children {config.helper_children} startup=1 idle=1 "
        f"concurrency={config.helper_concurrency}",
        "auth_param basic realm bulwark-egress",
        f"auth_param basic credentialsttl {config.credentials_ttl_seconds} seconds",
        "auth_param basic casesensitive on",
        "",
        "acl bulwark_manager_port myportname bulwark_manager",
        "acl bulwark_auth proxy_auth REQUIRED",
        "acl CONNECT method CONNECT",
        f"acl bulwark_pool note {NOTE_KEY} " + " ".join(config.addresses),
    ]
    for index, (target_host, target_port) in enumerate(config.targets):
        lines += _target_acls(index, target_host, target_port)
    lines += [
        "",
        "# The cache manager answers on its own loopback port only; that port serves nothing else.",
        "http_access allow manager bulwark_manager_port localhost",
        "http_access deny bulwark_manager_port",
        "http_access deny manager",
        "http_access deny !CONNECT",
        "http_access deny !bulwark_auth",
    ]
    for index in range(len(config.targets)):
        lines.append(
            f"http_access allow CONNECT bulwark_auth bulwark_pool "
            f"bulwark_target_{index}_host bulwark_target_{index}_port"
        )
    lines += [
        "http_access deny all",
        "",
        "# One outgoing address per pool address, chosen by the helper's note.",
    ]
    for address in config.addresses:
        lines.append(f"acl {_acl_name(address)} note {NOTE_KEY} {address}")
        lines.append(f"tcp_outgoing_address {address} {_acl_name(address)}")
    lines += [
        "",
        "# Squid skips every line above for an IPv6 destination (they are IPv4) and would let the",
        "# kernel pick the host's own, shared IPv6 address. A broker name with an AAAA record must",
        "# not leave from there: IPv6 connections bind an address of the discard-only prefix",
        "# (RFC 6666), which the host does not hold, so they fail and Squid uses the IPv4 path.",
        f"tcp_outgoing_address {IPV6_DISCARD}",
    ]
    return "\n".join(lines) + "\n"
