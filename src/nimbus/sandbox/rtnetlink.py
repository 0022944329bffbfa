"""The few rtnetlink requests an environment's network needs, sent directly.

Making a namespace's veth pair, addresses and routes takes eleven requests. Through
pyroute2 0.9 (whose synchronous API runs an event loop per call) they cost ~7 ms of CPU
per namespace on an idle host and ~90 ms on a loaded one (measured, sandbox/netns.py's
history); packed here they cost microseconds each, so a burst of cold starts is not
held up making namespaces. Only what nimbus sends is here: create a veth pair with its
peer in another namespace, bring a link up, add an IPv4 address, add an IPv4 route.

A ``Netlink`` socket belongs to the network namespace of the thread that opened it, and
keeps acting there whatever namespace that thread moves to later.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 20, 24
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
IFLA_IFNAME, IFLA_LINKINFO, IFLA_NET_NS_FD = 3, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
RT_TABLE_MAIN, RTPROT_BOOT, RTN_UNICAST = 254, 3, 1
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST = 0, 253, 254
IFF_UP = 0x1
NLA_F_NESTED = 0x8000


def _attr(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


def _name(value: str) -> bytes:
    return value.encode() + b"\0"


def _ifinfo(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, flags, change)


class NetlinkError(OSError):
    """The kernel refused a request (``errno`` says why)."""


class Netlink:
    """An rtnetlink socket in the opening thread's network namespace."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   NETLINK_ROUTE)
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def _request(self, kind: int, body: bytes, flags: int = 0) -> None:
        self._seq += 1
        header = struct.pack("=LHHLL", 16 + len(body), kind,
                             NLM_F_REQUEST | NLM_F_ACK | flags, self._seq, 0)
        self._sock.send(header + body)
        while True:
            reply = self._sock.recv(65536)
            offset = 0
            while offset + 16 <= len(reply):
                length, rtype, _flags, seq, _pid = struct.unpack_from("=LHHLL", reply, offset)
                if rtype == NLMSG_ERROR and seq == self._seq:
                    code = -struct.unpack_from("=i", reply, offset + 16)[0]
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    return
                offset += max(16, (length + 3) & ~3)

    def add_veth(self, name: str, peer: str, peer_netns_fd: int) -> None:
        """A veth pair: ``name`` here, ``peer`` in the namespace of ``peer_netns_fd``.
        NetlinkError with EEXIST when ``name`` is taken."""
        peer_info = _ifinfo() + _attr(IFLA_IFNAME, _name(peer)) + _attr(
            IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
        data = _attr(VETH_INFO_PEER | NLA_F_NESTED, peer_info)
        linkinfo = _attr(IFLA_INFO_KIND, _name("veth")) + _attr(IFLA_INFO_DATA | NLA_F_NESTED,
                                                                  data)
        body = _ifinfo() + _attr(IFLA_IFNAME, _name(name)) + _attr(
            IFLA_LINKINFO | NLA_F_NESTED, linkinfo)
        self._request(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL)

    def up(self, index: int) -> None:
        self._request(RTM_NEWLINK, _ifinfo(index, IFF_UP, IFF_UP))

    def add_address(self, index: int, address: ipaddress.IPv4Address, prefix: int) -> None:
        raw = address.packed
        body = struct.pack("=BBBBI", socket.AF_INET, prefix, 0, RT_SCOPE_UNIVERSE, index)
        body += _attr(IFA_LOCAL, raw) + _attr(IFA_ADDRESS, raw)
        self._request(RTM_NEWADDR, body, NLM_F_CREATE | NLM_F_EXCL)

    def add_route(self, destination: ipaddress.IPv4Network, index: int,
                  gateway: ipaddress.IPv4Address | None = None) -> None:
        """A route in the main table: to ``destination`` out of link ``index``, through
        ``gateway`` or directly (scope link)."""
        scope = RT_SCOPE_UNIVERSE if gateway is not None else RT_SCOPE_LINK
        body = struct.pack("=BBBBBBBBI", socket.AF_INET, destination.prefixlen, 0, 0,
                           RT_TABLE_MAIN, RTPROT_BOOT, scope, RTN_UNICAST, 0)
        if destination.prefixlen:
            body += _attr(RTA_DST, destination.network_address.packed)
        body += _attr(RTA_OIF, struct.pack("=I", index))
        if gateway is not None:
            body += _attr(RTA_GATEWAY, gateway.packed)
        self._request(RTM_NEWROUTE, body, NLM_F_CREATE | NLM_F_EXCL)


EEXIST = errno.EEXIST
