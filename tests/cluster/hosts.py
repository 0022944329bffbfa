"""Front ends as separate hosts on this machine: each nimbus in a network namespace of
its own, joined to this one by a veth pair, as servers on a private network would be.

The network is one /24 of 198.18.0.0/15 (the benchmarking range: nimbus's function
namespaces use 100.64.0.0/10 and 169.254.79.129, and nothing else here uses it), picked
at random and claimed by creating the first host's interface under a name that carries
it, so two runs on one machine never share one. The gateway ``198.18.X.1`` sits on the
host end of every veth (``nh<X>g<i>``, names nimbus's own ``nb*`` rules do not match);
host ``i`` is ``198.18.X.(i+2)`` on its ``eth0``, with loopback up, a route to the
gateway and, through it (this machine forwards between the veths), to the other hosts.
PostgreSQL and NATS listen on 127.0.0.1, which a host's own loopback is not: a TCP
forwarder in the test process listens on the gateway at their ports and
passes each connection on to 127.0.0.1, so a host reaches them at the gateway, through
its veth, and a rule in its namespace (``Host.cut``) cuts it off as a failed network
would. Servers in a host listen on the host's address with api_auth "none", which
``nimbus up`` allows off loopback only with NIMBUS_INSECURE=1: this network is reachable
from this machine alone.

The functions of a server in a host get namespaces of their own inside the host's, as
on any machine (nimbus makes them with its ``nb*`` veths there).
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.nimbus_process import NimbusProcess
from tests.sink import Sink

PREFIX = "nh"  # host ends of the veths; nimbus's own are nb*
PARTITION_TABLE = "nimbus_test_partition"


def _ip(*args: str, netns: str | None = None) -> None:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise OSError(f"{' '.join(cmd)}: {done.stderr.strip()}")


class Forwarder:
    """Listens on ``address:port`` and passes each connection on to ``127.0.0.1:target``
    (``port`` by default), both ways, until either side closes; one thread per
    direction. ``close`` ends the listener and every connection."""

    def __init__(self, address: str, port: int, target: int | None = None) -> None:
        self.target = target or port
        self._listener = socket.create_server((address, port), backlog=256)
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()  # as a refused connection would be
                continue
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        # One side is done: so is the other (a half-close would keep the pair around).
        with self._lock:
            for s in (src, dst):
                if s in self._open:
                    self._open.discard(s)
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
                    s.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets, self._open = list(self._open), set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


@dataclass
class Host:
    """One host: its namespace, its address, the host end of its veth."""

    name: str
    netns: str
    address: str
    veth: str
    gateway: str
    servers: list[NimbusProcess] = field(default_factory=list)

    @property
    def prefix(self) -> list[str]:
        """The command prefix that runs a command in this host's network namespace."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--"]

    def nimbus(self, data_dir: Path, env: dict[str, str]) -> NimbusProcess:
        """A nimbus server on this host (not started): listening on the host's address
        with api_auth "none" (NIMBUS_INSECURE: this network is this machine's alone)."""
        server = NimbusProcess(data_dir, env={**env, "NIMBUS_INSECURE": "1"},
                               host=self.address, prefix=self.prefix)  # fmt: skip
        self.servers.append(server)
        return server

    def nft(self, commands: str) -> None:
        """Apply nft ``commands`` in this host's namespace."""
        done = subprocess.run([*self.prefix, "nft", "-f", "-"], input=commands, text=True,
                              capture_output=True, check=False)  # fmt: skip
        if done.returncode != 0:
            raise OSError(f"nft in {self.netns}: {done.stderr.strip()}")

    def cut(self, ports: Sequence[int]) -> None:
        """Cut the host off the gateway's ``ports`` (5432 and 4222: PostgreSQL and NATS,
        the installation it shares): every packet of theirs dropped, both ways, for the
        host and its functions alike, silently (no reset: peers hear nothing, as in a
        partition). Its clients, and webhooks it posts, still get through."""
        services = ", ".join(str(p) for p in ports)
        rules = (f'oifname "eth0" ip daddr {self.gateway} tcp dport {{ {services} }} drop\n'
                 f'iifname "eth0" ip saddr {self.gateway} tcp sport {{ {services} }} drop\n')
        chains = "".join(
            f"    chain {hook} {{\n        type filter hook {hook} priority -300; "
            f"policy accept;\n        {rules}    }}\n"
            for hook in ("input", "output", "forward"))
        self.nft(f"table ip {PARTITION_TABLE} {{\n{chains}}}\n")

    def isolate(self) -> None:
        """Cut the host off everything (its clients too), silently, both ways: a machine
        whose network is gone, or a hung one, as its peers see it."""
        chains = "".join(
            f"    chain {hook} {{\n        type filter hook {hook} priority -300; "
            f"policy accept;\n        oifname \"eth0\" drop\n        iifname \"eth0\" drop\n"
            f"    }}\n" for hook in ("input", "output", "forward"))
        self.nft(f"table ip {PARTITION_TABLE} {{\n{chains}}}\n")

    def restore(self) -> None:
        """Undo ``cut`` or ``isolate``."""
        self.nft(f"delete table ip {PARTITION_TABLE}\n")


class HostSink(Sink):
    """A webhook sink on the gateway that knows the hosts: ``hosts`` names the host each
    record came from, in the order of ``received``."""

    def __init__(self, gateway: str, names: dict[str, str]) -> None:
        super().__init__(address=gateway)
        self.names = names

    @property
    def hosts(self) -> list[str]:
        return [self.names.get(address, "?") for address in self.senders]


@dataclass
class Network:
    """The hosts, their gateway, and what the gateway forwards to this machine."""

    gateway: str
    hosts: dict[str, Host]
    forwarders: list[Forwarder] = field(default_factory=list)

    def forward(self, port: int) -> None:
        """Let every host reach ``127.0.0.1:port`` of this machine at ``gateway:port``."""
        self.forwarders.append(Forwarder(self.gateway, port))

    def sink(self) -> HostSink:
        return HostSink(self.gateway, {h.address: h.name for h in self.hosts.values()})

    def installation(self, env: dict[str, str]) -> dict[str, str]:
        """An installation's settings (servers.shared_installation) as a host sees them:
        PostgreSQL and NATS at the gateway, webhooks to the gateway allowed."""
        seen = {**env}
        for key in ("NIMBUS_DATABASE_URL", "NIMBUS_QUEUE_URL"):
            seen[key] = env[key].replace("@127.0.0.1:", f"@{self.gateway}:").replace(
                "//127.0.0.1:", f"//{self.gateway}:")
        seen["NIMBUS_WEBHOOK_ALLOW"] = f"{self.gateway}/32"
        return seen


def _claim() -> tuple[int, str]:
    """A free /24: the first host's veth is created under a name carrying it, which the
    kernel refuses twice."""
    for _ in range(64):
        net = secrets.randbelow(512)
        veth = f"{PREFIX}{net:03x}g0"
        try:
            _ip("link", "add", veth, "type", "veth", "peer", "name", f"{PREFIX}{net:03x}p0")
        except OSError as exc:
            if "exists" in str(exc):
                continue
            raise
        return net, veth
    raise OSError("no free test network in 198.18.0.0/15 after 64 tries")


@contextlib.contextmanager
def network(names: Sequence[str], forward: Sequence[int] = (5432, 4222)) -> Iterator[Network]:
    """Hosts ``names`` on a network of their own, ``forward`` ports of this machine's
    loopback reachable from them at the gateway; everything undone on exit (servers
    started on a host stopped, forwarders closed, namespaces and veths deleted) but IPv4
    forwarding, which nimbus's own function networks turn on anyway. A FORWARD policy
    of drop elsewhere on the machine (Docker's) keeps the hosts from each other."""
    with contextlib.ExitStack() as undo:
        forwarding = Path("/proc/sys/net/ipv4/ip_forward")
        if forwarding.read_text().strip() != "1":  # hosts reach each other through here
            forwarding.write_text("1\n")
        net, first = _claim()
        undo.callback(_quiet_ip, "link", "del", first)
        # 198.18.0.0/15 as 512 /24s: 198.18.N.0 for N < 256, 198.19.(N-256).0 after.
        prefix = f"198.{18 + (net >> 8)}.{net & 0xFF}"
        found = Network(f"{prefix}.1", {})
        gateway = found.gateway
        # Undone last: servers stop while they still reach the database and the broker.
        undo.callback(_close_all, found.forwarders)
        tag = f"{net:03x}"
        for i, name in enumerate(names):
            netns = f"nimbus-test-{tag}-{name}"
            veth, peer = f"{PREFIX}{tag}g{i}", f"{PREFIX}{tag}p{i}"
            if i > 0:
                _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
                undo.callback(_quiet_ip, "link", "del", veth)
            _ip("netns", "add", netns)
            undo.callback(_quiet_ip, "netns", "del", netns)
            address = f"{prefix}.{i + 2}"
            _ip("link", "set", peer, "netns", netns)
            _ip("link", "set", peer, "name", "eth0", netns=netns)
            _ip("link", "set", "lo", "up", netns=netns)
            _ip("addr", "add", f"{address}/32", "dev", "eth0", netns=netns)
            _ip("link", "set", "eth0", "up", netns=netns)
            _ip("route", "add", f"{gateway}/32", "dev", "eth0", netns=netns)
            # The other hosts through the gateway (this machine routes between veths).
            _ip("route", "add", f"{prefix}.0/24", "via", gateway, "dev", "eth0", netns=netns)
            _ip("addr", "add", f"{gateway}/32", "dev", veth)
            _ip("link", "set", veth, "up")
            _ip("route", "add", f"{address}/32", "dev", veth)
            found.hosts[name] = host = Host(name, netns, address, veth, gateway)
            undo.callback(_stop_all, host)
        for port in forward:
            found.forward(port)
        yield found


def _stop_all(host: Host) -> None:
    # Before its namespace goes: nothing of a test's servers outlives the test.
    for server in host.servers:
        try:
            server.stop()
        except subprocess.TimeoutExpired:
            server.stop(signal.SIGKILL)


def _quiet_ip(*args: str) -> None:
    with contextlib.suppress(OSError):
        _ip(*args)


def _close_all(forwarders: list[Forwarder]) -> None:
    for forwarder in forwarders:
        forwarder.close()
