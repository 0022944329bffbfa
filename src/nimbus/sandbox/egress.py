"""Where functions may connect: the rules of an environment's own network namespace.

Every environment with network has a network namespace of its own (sandbox/netns.py),
joined to the host by a veth pair: its address is one of 100.64.0.0/10, its gateway is
169.254.79.129 (the address Lambda gives its X-Ray daemon), and the host masquerades its
traffic to the outside. Two rulesets decide what it reaches:

- **In the environment** (``environment_ruleset``): public internet addresses, yes;
  non-public ones (private, loopback of the host, link-local, carrier-grade NAT,
  multicast and reserved ranges) only when an allow-list entry names them. The
  function cannot change these rules: it has no CAP_NET_ADMIN. The host's loopback is
  reached through the gateway: a connection to ``127.0.0.1:PORT`` on an allowed port
  is translated to ``169.254.79.129:PORT`` in the environment and back to the host's
  ``127.0.0.1:PORT`` on the host, so code calls ``127.0.0.1`` as it would anywhere.
- **On the host** (``HOST_RULESET``, one table ``ip nimbus`` shared by every nimbus on
  the host): nothing from an environment reaches a host address except what the
  environment's rules translated; no environment reaches another one.

Allow-list entries (installation-wide: ``function_network_allow`` /
``NIMBUS_FUNCTION_NETWORK_ALLOW``; per function: the tag ``nimbus:network-allow``, entries
separated by spaces): an IPv4 network in CIDR form (``10.1.0.0/16``) or an address and
port (``10.1.2.3:5432``); for the host's loopback, ``127.0.0.1:PORT`` or ``127.0.0.1/32``
(every port but the Runtime API's). The nameservers of the host's resolv.conf are allowed
on port 53.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from nimbus.egress_rules import LOOPBACK, LOOPBACK_NET, RUNTIME_API_PORT, Rule, parse_rules

GATEWAY = "169.254.79.129"
SUBNET = ipaddress.IPv4Network("100.64.0.0/10")
HOST_PREFIX = "nb"  # host-side veth names: nb + 6 hex digits of the address's offset

# What an environment does not reach unless allowed: every IPv4 range that is not the
# public internet's (RFC 6890), except the documentation ranges, which test hosts use
# to stand in for the internet. The host's own addresses are refused on the host.
NON_PUBLIC = ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
              "172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15",
              "224.0.0.0/3")

HOST_RULESET = f"""
table ip nimbus
delete table ip nimbus
table ip nimbus {{
    chain prerouting {{
        type nat hook prerouting priority -100; policy accept;
        iifname "{HOST_PREFIX}*" ip daddr {GATEWAY} dnat to {LOOPBACK}
    }}
    chain postrouting {{
        type nat hook postrouting priority 100; policy accept;
        ip saddr {SUBNET} oifname != "{HOST_PREFIX}*" masquerade
    }}
    chain guard {{
        type filter hook prerouting priority -150; policy accept;
        iifname "{HOST_PREFIX}*" ip daddr != {GATEWAY} fib daddr type local drop
    }}
    chain input {{
        type filter hook input priority 0; policy accept;
        iifname "{HOST_PREFIX}*" ct state established,related accept
        iifname "{HOST_PREFIX}*" ct original ip daddr {GATEWAY} accept
        iifname "{HOST_PREFIX}*" reject with icmp type admin-prohibited
    }}
    chain forward {{
        type filter hook forward priority 0; policy accept;
        iifname "{HOST_PREFIX}*" oifname "{HOST_PREFIX}*" reject with icmp type admin-prohibited
    }}
}}
table ip6 nimbus
delete table ip6 nimbus
table ip6 nimbus {{
    chain input {{
        type filter hook input priority 0; policy accept;
        iifname "{HOST_PREFIX}*" drop
    }}
    chain forward {{
        type filter hook forward priority 0; policy accept;
        iifname "{HOST_PREFIX}*" drop
    }}
}}
"""


SYSTEMD_UPSTREAM = Path("/run/systemd/resolve/resolv.conf")


def resolv_conf(stub: Path = Path("/etc/resolv.conf"),
                upstream: Path = SYSTEMD_UPSTREAM) -> Path:
    """The resolv.conf environments get a copy of: the host's, unless it names only a
    local stub resolver (systemd-resolved's 127.0.0.53), which an environment's own
    loopback does not have; then the upstream servers the stub uses."""
    servers = resolvers(stub)
    if servers and all(s.is_loopback and s != LOOPBACK for s in servers) and upstream.exists():
        return upstream
    return stub


def resolvers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[ipaddress.IPv4Address]:
    """The IPv4 nameservers of ``resolv_conf``."""
    found = []
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                address = ipaddress.ip_address(parts[1])
            except ValueError:
                continue
            if isinstance(address, ipaddress.IPv4Address):
                found.append(address)
    return found


@dataclass(frozen=True)
class EgressPolicy:
    """The installation's allow-list, and what every environment may reach besides:
    the nameservers and this process's X-Ray receiver (UDP on the host's loopback)."""

    rules: tuple[Rule, ...] = ()
    nameservers: tuple[ipaddress.IPv4Address, ...] = ()
    host_udp_ports: tuple[int, ...] = ()
    problems: tuple[str, ...] = field(default=(), compare=False)
    # The resolv.conf the nameservers came from: environments get a copy of it.
    resolv_conf: Path = Path("/etc/resolv.conf")

    @classmethod
    def of(cls, entries: Iterable[str], host_udp_ports: Iterable[int] = ()) -> EgressPolicy:
        rules = parse_rules(list(entries), "function_network_allow")
        nameservers, problems = [], []
        source = resolv_conf()
        for address in resolvers(source):
            if address == LOOPBACK:
                rules.append(Rule(LOOPBACK_NET, 53))
            elif address.is_loopback:
                problems.append(
                    f"nameserver {address} (in {source}) is on the host's loopback "
                    "at an address other than 127.0.0.1: functions cannot resolve names "
                    "through it")
            else:
                nameservers.append(address)
        return cls(tuple(rules), tuple(nameservers), tuple(host_udp_ports), tuple(problems),
                   source)

    def environment_ruleset(self) -> str:
        """The ruleset an environment's namespace starts with."""
        return _ruleset() + additions(self.rules, self.nameservers, self.host_udp_ports)


def additions(rules: Iterable[Rule], nameservers: Iterable[ipaddress.IPv4Address] = (),
              host_udp_ports: Iterable[int] = ()) -> str:
    """nft commands that add ``rules`` to an environment's ruleset (a function's own
    entries are added to the namespace it is given)."""
    networks, services, host_tcp, host_udp = [], [], [], [str(p) for p in host_udp_ports]
    for rule in rules:
        if rule.loopback:
            ports = (f"{rule.port}" if rule.port is not None else
                     f"1-{RUNTIME_API_PORT - 1}, {RUNTIME_API_PORT + 1}-65535")
            host_tcp.append(ports)
            host_udp.append(ports)
        elif rule.port is None:
            networks.append(str(rule.network))
        else:
            for proto in ("tcp", "udp"):
                services.append(f"{rule.network} . {proto} . {rule.port}")
    for address in nameservers:
        services += [f"{address} . tcp . 53", f"{address} . udp . 53"]
    lines = []
    for name, elements in (("allow_net", networks), ("allow_svc", services),
                           ("host_tcp", host_tcp), ("host_udp", host_udp)):
        if elements:
            lines.append(f"add element ip nimbus {name} {{ {', '.join(elements)} }}\n")
    return "".join(lines)


def _ruleset() -> str:
    non_public = ", ".join(NON_PUBLIC)
    return f"""
table ip nimbus {{
    set allow_net {{ type ipv4_addr; flags interval; auto-merge; }}
    set allow_svc {{ type ipv4_addr . inet_proto . inet_service; flags interval; }}
    set host_tcp {{ type inet_service; flags interval; auto-merge; }}
    set host_udp {{ type inet_service; flags interval; auto-merge; }}
    chain nat_output {{
        type nat hook output priority -100; policy accept;
        ip daddr {LOOPBACK} tcp dport @host_tcp dnat to {GATEWAY}
        ip daddr {LOOPBACK} udp dport @host_udp dnat to {GATEWAY}
    }}
    chain postrouting {{
        type nat hook postrouting priority 100; policy accept;
        oifname "eth0" ip saddr 127.0.0.0/8 masquerade
    }}
    chain output {{
        type filter hook output priority 0; policy accept;
        oifname "lo" accept
        ct state established,related accept
        ip daddr {GATEWAY} ct status dnat accept
        ip daddr {GATEWAY} reject with icmp type admin-prohibited
        ip daddr @allow_net accept
        ip daddr . meta l4proto . th dport @allow_svc accept
        ip daddr {{ {non_public} }} reject with icmp type admin-prohibited
    }}
}}
"""
