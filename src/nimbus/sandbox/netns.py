"""Network namespaces for environments, made ahead of time.

Each environment with network joins a namespace of its own at birth (the zygote's child
``setns``-es into the descriptor it is sent, nimbus.guest.forkserver): a veth pair whose
host end is ``nb<offset>`` (169.254.79.129, the gateway, on every host end) and whose
other end is the environment's ``eth0`` with one address of 100.64.0.0/10, a default
route through the gateway, loopback up, and the environment's ruleset
(sandbox/egress.py). Namespaces are made in the background and kept ready, a few at a
time, so a cold start only passes a descriptor along.

Addresses are picked at random and claimed by creating the host end, whose name
carries the address: the kernel refuses a second interface of the same name, so two
processes (or two nimbus installations) never hand out the same address, and no
lock file is needed. A namespace lives as long as a process or a descriptor holds it;
when the environment's last process exits, the kernel removes both veth ends and the
host route with it, so a killed server leaves nothing behind.

All namespace switching happens on one dedicated thread: ``setns`` changes the calling
thread's namespace, and no other thread of the server may ever find itself elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import ipaddress
import logging
import os
import secrets
import shutil
import socket
import subprocess
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from nimbus.sandbox import egress
from nimbus.sandbox.errors import IsolationUnavailable, SandboxError
from nimbus.sandbox.rtnetlink import Netlink, NetlinkError

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
READY = 4  # namespaces kept ready; a burst of cold starts makes the rest on demand
NEIGHBOURS = 65536  # the host's neighbour table limit nimbus raises to, at least
GATEWAY = ipaddress.IPv4Address(egress.GATEWAY)


class NetworkSetupError(SandboxError):
    """A namespace could not be made or configured."""


NFT_MISSING = (
    "functions with network get a network namespace of their own, filtered with "
    "nftables, and the nft command is missing (apt-get install nftables); or set "
    "function_network = \"host\" to let functions share the host's network, unisolated")


class _Nft:
    """The nft command, run from the netns thread: a child forked while that thread is
    in an environment's namespace applies its rules there. A process rather than
    libnftables in-process: libnftables waits on its netlink socket with select(), which
    aborts the whole process once that socket's descriptor is past 1023 (a server
    holding a thousand connections)."""

    def __init__(self) -> None:
        found = shutil.which("nft") or next(
            (p for p in ("/usr/sbin/nft", "/sbin/nft") if os.access(p, os.X_OK)), None)
        if found is None:
            raise IsolationUnavailable(NFT_MISSING)
        self._nft = found

    def run(self, commands: str) -> None:
        """Apply ``commands`` atomically in the calling thread's network namespace."""
        done = subprocess.run([self._nft, "-f", "-"], input=commands.encode(),
                              capture_output=True, check=False, timeout=30)
        if done.returncode != 0:
            error = done.stderr.decode(errors="replace").strip()
            raise NetworkSetupError(f"nftables refused the rules: {error}")


def nft_problem() -> str:
    """Why nft cannot be run here ("" if it can)."""
    try:
        _Nft()
    except IsolationUnavailable as exc:
        return str(exc)
    return ""


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _sysctl(path: str, value: str) -> None:
    # /proc/sys/net answers for the namespace of the thread that opens it.
    with open(f"/proc/sys/net/{path}", "w") as f:
        f.write(value)


def _sysctl_if_there(path: str, value: str) -> None:
    # A kernel booted with ipv6.disable=1 has no IPv6 settings, and no IPv6 to turn off.
    with contextlib.suppress(FileNotFoundError):
        _sysctl(path, value)


@dataclass
class Namespace:
    """A ready namespace: its descriptor (to send along with a spawn request) and the
    environment's address. ``close`` once the environment holds it."""

    fd: int
    address: ipaddress.IPv4Address
    host_if: str
    rules: frozenset[egress.Rule]  # beyond the policy's own

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _close_made(made: asyncio.Future[Namespace]) -> None:
    if not made.cancelled() and made.exception() is None:
        made.result().close()


class NetnsSupply:
    """Namespaces for this process's environments, kept ``READY`` ahead."""

    def __init__(self, policy: egress.EgressPolicy, ready: int = READY) -> None:
        self.policy = policy
        self._ready_target = ready
        self._ready: deque[Namespace] = deque()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nimbus-netns")
        self._refilling = False
        self._closed = False
        self._nft: _Nft | None = None
        self._host_fd = -1
        self._nl: Netlink | None = None
        # The rules every new namespace starts with beyond the policy's, and their
        # ruleset: one tuple, read at once by the netns thread while the loop widens it.
        self._base: tuple[frozenset[egress.Rule], str] = (frozenset(),
                                                           policy.environment_ruleset())

    # -- set-up (blocking, called once from the manager's preparation) ---------------------

    def open(self) -> None:
        """Check and prepare the host: forwarding on, the host table in place. Raises
        IsolationUnavailable with what to install or change."""
        self._thread.submit(self._open).result()

    def _open(self) -> None:
        self._nft = _Nft()
        self._host_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _sysctl("ipv4/ip_forward", "1")
            # One neighbour entry per environment on the host: past the kernel's default
            # of 1,024 ("neighbor table overflow") connections fail with EHOSTUNREACH.
            for name, floor in (("gc_thresh2", NEIGHBOURS // 2), ("gc_thresh3", NEIGHBOURS)):
                path = f"ipv4/neigh/default/{name}"
                try:
                    with open(f"/proc/sys/net/{path}") as f:
                        low = int(f.read()) < floor
                except FileNotFoundError:
                    # Only the initial network namespace has them (the table's limits
                    # are the kernel's): nimbus in a container's namespace leaves them
                    # to whoever runs the machine.
                    break
                if low:
                    _sysctl(path, str(floor))
            self._nft.run(egress.HOST_RULESET)
        except (OSError, NetworkSetupError) as exc:
            raise IsolationUnavailable(
                "cannot prepare the host for functions' network namespaces (IPv4 "
                f"forwarding and the nftables table 'ip nimbus'): {exc}") from exc
        self._nl = Netlink()
        for problem in self.policy.problems:
            log.warning("function network: %s", problem)

    # -- namespaces ------------------------------------------------------------------------

    def widen(self, rule: egress.Rule) -> None:
        """Let every namespace made from now on allow ``rule`` too (this process's X-Ray
        receiver, once it has a port); those made before get it when taken."""
        rules = self._base[0]
        if rule not in rules:
            rules = rules | {rule}
            self._base = (rules, self.policy.environment_ruleset() + egress.additions(rules))

    async def take(self, wanted: frozenset[egress.Rule] = frozenset()) -> Namespace:
        """A namespace (a ready one if any) that allows ``wanted`` besides the policy."""
        loop = asyncio.get_running_loop()
        namespace = self._ready.popleft() if self._ready else None
        if namespace is None or not wanted <= namespace.rules:
            made = loop.run_in_executor(self._thread, self._make_with, namespace, wanted)
            try:
                namespace = await asyncio.shield(made)
            except asyncio.CancelledError:
                # The cold start was given up: the namespace still being made is closed
                # when it is done, not left held until the process exits.
                made.add_done_callback(_close_made)
                raise
        if len(self._ready) < self._ready_target and not self._refilling and not self._closed:
            self._refilling = True
            loop.run_in_executor(self._thread, self._refill)
        return namespace

    async def allow(self, pid: int, extra: frozenset[egress.Rule]) -> None:
        """Add ``extra`` rules to the namespace process ``pid`` lives in (a stem cell
        about to become a function that has its own allow-list)."""
        if extra:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._allow_pid,
                                                             pid, extra)

    def _allow_pid(self, pid: int, extra: frozenset[egress.Rule]) -> None:
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._add(fd, extra)
        finally:
            os.close(fd)

    def _add(self, fd: int, extra: frozenset[egress.Rule]) -> None:
        """Add ``extra`` rules to the ruleset of the namespace ``fd`` names."""
        with self._inside(fd):
            self._rules(egress.additions(extra))

    def _make_with(self, namespace: Namespace | None,
                   wanted: frozenset[egress.Rule]) -> Namespace:
        if namespace is None:
            namespace = self._make()
        extra = wanted - namespace.rules
        if extra:
            try:
                self._add(namespace.fd, extra)
            except BaseException:
                namespace.close()
                raise
            namespace.rules = namespace.rules | extra
        return namespace

    def _refill(self) -> None:
        # One at a time, queued again after each: a cold start's own request waits
        # behind one namespace in the making at most, not behind the whole refill.
        try:
            if len(self._ready) < self._ready_target and not self._closed:
                self._ready.append(self._make())
        except Exception as exc:  # logged; a cold start then makes its own
            log.warning("making a network namespace ahead of time failed: %s", exc)
            self._refilling = False
            return
        if len(self._ready) < self._ready_target and not self._closed:
            self._thread.submit(self._refill)
        else:
            self._refilling = False

    @contextlib.contextmanager
    def _inside(self, fd: int) -> Iterator[None]:
        assert threading.current_thread().name.startswith("nimbus-netns")
        _setns(fd)
        try:
            yield
        finally:
            _setns(self._host_fd)

    def _rules(self, commands: str) -> None:
        if commands:
            assert self._nft is not None
            self._nft.run(commands)

    def _make(self) -> Namespace:
        """One namespace, configured (runs on the netns thread)."""
        fd = -1
        try:
            if _libc.unshare(CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise NetworkSetupError(f"unshare(CLONE_NEWNET): {os.strerror(err)}")
            try:
                fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
                _sysctl("ipv4/conf/all/route_localnet", "1")
                # IPv4 only: eth0 (created below, from "default") gets no IPv6 link-local
                # address, through which it could reach the host's IPv6 listeners.
                _sysctl_if_there("ipv6/conf/default/disable_ipv6", "1")
                base, ruleset = self._base
                self._rules(ruleset)
            finally:
                _setns(self._host_fd)
            address, host_if = self._claim(fd)
            with self._inside(fd):
                self._configure_inside(address)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        return Namespace(fd, address, host_if, base)

    def _claim(self, fd: int) -> tuple[ipaddress.IPv4Address, str]:
        """Create the veth pair under a free address's name; its host end configured."""
        nl = self._nl
        assert nl is not None
        for _ in range(64):
            offset = secrets.randbelow(egress.SUBNET.num_addresses - 2) + 1
            host_if = f"{egress.HOST_PREFIX}{offset:06x}"
            try:
                nl.add_veth(host_if, "eth0", fd)
            except NetlinkError as exc:
                if exc.errno == errno.EEXIST:  # that address is someone else's
                    continue
                raise NetworkSetupError(f"creating {host_if}: {exc}") from exc
            address = egress.SUBNET.network_address + offset
            index = socket.if_nametoindex(host_if)
            _sysctl(f"ipv4/conf/{host_if}/route_localnet", "1")
            _sysctl_if_there(f"ipv6/conf/{host_if}/disable_ipv6", "1")
            nl.add_address(index, GATEWAY, 32)
            nl.up(index)
            nl.add_route(ipaddress.IPv4Network(f"{address}/32"), index)
            return address, host_if
        raise NetworkSetupError("no free environment address found in 64 tries")

    @staticmethod
    def _configure_inside(address: ipaddress.IPv4Address) -> None:
        """Loopback and eth0 up, eth0's address, routes through the gateway (run inside)."""
        nl = Netlink()
        try:
            eth0 = socket.if_nametoindex("eth0")
            nl.up(socket.if_nametoindex("lo"))
            nl.add_address(eth0, address, 32)
            nl.up(eth0)
            nl.add_route(ipaddress.IPv4Network(f"{GATEWAY}/32"), eth0)
            nl.add_route(ipaddress.IPv4Network("0.0.0.0/0"), eth0, GATEWAY)
        finally:
            nl.close()

    def close(self) -> None:
        self._closed = True

        def drain() -> None:
            while self._ready:
                self._ready.popleft().close()
            if self._nl is not None:
                self._nl.close()
            if self._host_fd >= 0:
                os.close(self._host_fd)

        with contextlib.suppress(RuntimeError):
            self._thread.submit(drain).result()
        self._thread.shutdown(wait=True)
