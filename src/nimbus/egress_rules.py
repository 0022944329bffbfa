"""Allow-list entries for functions' network (read here, applied by sandbox/egress.py).

An entry is an IPv4 network in CIDR form (``10.1.0.0/16``) or an address and port
(``10.1.2.3:5432``); of the host's loopback only 127.0.0.1 can be named
(``127.0.0.1:PORT``, or ``127.0.0.1/32`` for every port but the Runtime API's).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from nimbus.net_policy import AllowEntryError, parse_allowance, split_entries

TAG = "nimbus:network-allow"  # a function's own entries, separated by spaces
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
LOOPBACK_NET = ipaddress.IPv4Network("127.0.0.1/32")  # the host loopback a rule may name
# A `provided` runtime's Runtime API listens here inside an isolated environment; it is
# never forwarded to the host, whatever the allow-list says.
RUNTIME_API_PORT = 9001


@dataclass(frozen=True)
class Rule:
    """One allowed destination: a network, on one port or on any (None)."""

    network: ipaddress.IPv4Network
    port: int | None = None

    @property
    def loopback(self) -> bool:
        return self.network.subnet_of(ipaddress.IPv4Network("127.0.0.0/8"))


def parse_rules(entries: str | Iterable[str], where: str, loopback: bool = True) -> list[Rule]:
    """Read allow-list entries; AllowEntryError names the entry, ``where`` it came from,
    and what to write instead."""
    rules = []
    for entry in split_entries(entries):
        allowance = parse_allowance(entry)
        network = allowance.network
        if network is None:
            raise AllowEntryError(
                f"{where}: {entry!r} is a host name; functions are allowed addresses "
                "(CIDR or ADDRESS:PORT), resolve it first")
        if network.version != 4:
            raise AllowEntryError(
                f"{where}: {entry!r} is IPv6; functions have IPv4 networking only")
        assert isinstance(network, ipaddress.IPv4Network)
        rule = Rule(network, allowance.port)
        if rule.loopback and not loopback:
            raise AllowEntryError(
                f"{where}: {entry!r}: a function's own entries cannot open the host's "
                "loopback; only the operator can (function_network_allow)")
        if rule.loopback and network != LOOPBACK_NET:
            raise AllowEntryError(
                f"{where}: {entry!r}: of the host's loopback only 127.0.0.1 can be "
                "allowed (127.0.0.1/32, or 127.0.0.1:PORT)")
        if rule.loopback and rule.port == RUNTIME_API_PORT:
            raise AllowEntryError(
                f"{where}: {entry!r}: port {RUNTIME_API_PORT} is the Runtime API's inside "
                "the environment and cannot be forwarded to the host")
        rules.append(rule)
    return rules
