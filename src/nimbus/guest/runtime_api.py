"""The Lambda Runtime API, served inside the sandbox for ``provided.*`` runtimes.

PID 1 of the environment is this server (the host Python, forked from its zygote and
confined like any runtime). It listens on 127.0.0.1 on a port of its own, execs
``/var/task/bootstrap`` (or ``/opt/bootstrap``) with ``AWS_LAMBDA_RUNTIME_API`` pointing
at it, and relays between the bootstrap and the server's control socket:

  GET  /2018-06-01/runtime/invocation/next            the next event, with Lambda's headers
  POST /2018-06-01/runtime/invocation/{id}/response   202; 413 past 6 MB; 400 unknown id
  POST /2018-06-01/runtime/invocation/{id}/error      202 (Lambda-Runtime-Function-Error-Type)
  POST /2018-06-01/runtime/init/error                 202, then the environment is discarded

The first ``/next`` ends the init phase. When the environment shares the host network
namespace, connections from any other uid than the environment's are refused, so other
environments cannot reach this port. One thread, one selector; the bootstrap is the only
client. Runs on the host Python (3.9+): standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import time

from nimbus.guest import protocol
from nimbus.guest.jail import CTL_FD, LOG_FD

RUNTIME_API_PORT = 9001  # nimbus.egress_rules.RUNTIME_API_PORT (the guest imports nothing else)

PREFIX = "/2018-06-01/runtime/"
BOOTSTRAPS = ["/var/task/bootstrap", "/opt/bootstrap"]
MAX_HEAD = 64 * 1024
MAX_ERROR_TYPE = protocol.MAX_ERROR_TYPE
# Bodies above this are refused without buffering them.
MAX_BODY = 8 * protocol.MAX_PAYLOAD
REASONS = {100: "Continue", 200: "OK", 202: "Accepted", 400: "Bad Request", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 413: "Request Entity Too Large",
           431: "Request Header Fields Too Large"}


def _json(status: int, body: dict) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def _error(status: int, error_type: str, message: str) -> tuple[int, dict, bytes]:
    return _json(status, {"errorMessage": message, "errorType": error_type})


ACCEPTED = (202, {"Content-Type": "application/json"}, b'{"status":"OK"}\n')
NOT_FOUND = (404, {"Content-Type": "text/plain; charset=utf-8"}, b"404 page not found\n")
NOT_ALLOWED: tuple[int, dict[str, str], bytes] = (405, {}, b"")
TOO_LARGE = _error(413, "RequestEntityTooLarge",
                   f"Exceeded maximum allowed payload size ({protocol.MAX_PAYLOAD} bytes).")


def _state_error(current: str, wanted: str) -> tuple[int, dict, bytes]:
    return _error(403, "InvalidStateTransition",
                  f"State transition from {current} to {wanted} failed for runtime. "
                  "Error: State transition is not allowed")


class Request:
    __slots__ = ["body", "headers", "method", "path"]

    def __init__(self, method: str, path: str, headers: dict, body: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body


class Connection:
    """One HTTP/1.1 client connection with keep-alive and chunked bodies."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.head: tuple[str, str, dict] | None = None
        self.close_after = False

    def send(self, status: int, headers: dict, body: bytes) -> None:
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, '')}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        if self.close_after:
            lines.append("Connection: close")
        try:
            self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        except OSError:
            self.close_after = True

    def _chunked(self) -> bytes | None:
        body = bytearray()
        pos = 0
        while True:
            end = self.buf.find(b"\r\n", pos)
            if end < 0:
                return None
            size = int(bytes(self.buf[pos:end]).split(b";")[0], 16)  # ValueError: bad input
            if size < 0 or len(body) + size > MAX_BODY:
                raise ValueError("chunked body too large")
            pos = end + 2
            if size == 0:
                trailer_end = self.buf.find(b"\r\n\r\n", pos - 2)
                if trailer_end < 0:
                    return None
                del self.buf[:trailer_end + 4]
                return bytes(body)
            if len(self.buf) < pos + size + 2:
                return None
            body += self.buf[pos:pos + size]
            pos += size + 2

    def parse(self) -> Request | tuple[int, dict, bytes] | None:
        """A complete request, an error to answer (then close), or None for more data."""
        try:
            return self._parse()
        except ValueError:  # a malformed length or chunk size: the bootstrap's mistake
            self.close_after = True
            return (400, {}, b"")

    def _parse(self) -> Request | tuple[int, dict, bytes] | None:
        if self.head is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self.close_after = True
                    return (431, {}, b"")
                return None
            lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            del self.buf[:end + 4]
            method, target, version = lines[0].split(" ", 2)  # ValueError: not HTTP
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            self.head = (method, target.split("?", 1)[0], headers)
            tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
            # Connection: close (urllib sends it), or HTTP/1.0 without keep-alive: the
            # answer is the connection's last.
            if "close" in tokens or (version == "HTTP/1.0" and "keep-alive" not in tokens):
                self.close_after = True
            length = _content_length(headers)
            if length > MAX_BODY:
                self.close_after = True
                return TOO_LARGE
            if headers.get("expect", "").lower() == "100-continue":
                self.send(100, {}, b"")
        method, path, headers = self.head
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._chunked()
            if body is None:
                return None
        else:
            length = _content_length(headers)
            if len(self.buf) < length:
                return None
            body = bytes(self.buf[:length])
            del self.buf[:length]
        self.head = None
        return Request(method, path, headers, body)


def _content_length(headers: dict) -> int:
    raw = headers.get("content-length") or "0"
    if not raw.isascii() or not raw.isdigit():
        raise ValueError(f"bad Content-Length {raw!r}")
    return int(raw)


def _loopback_hex() -> str:
    return "{:08X}".format(struct.unpack("=I", socket.inet_aton("127.0.0.1"))[0])


def peer_uid(peer_port: int, local_port: int) -> int | None:
    """Owner of the TCP socket 127.0.0.1:peer_port connected to our port."""
    lo = _loopback_hex()
    local = f"{lo}:{peer_port:04X}"
    remote = f"{lo}:{local_port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 7 and parts[1] == local and parts[2] == remote:
                    return int(parts[7])
    except OSError:
        pass
    return None


class RuntimeApi:
    def __init__(self, req: dict) -> None:
        self.req = req
        self.nonce = req["nonce"]
        self.seq = 0
        self.ctl = socket.socket(fileno=CTL_FD)
        self.ctl_buf = bytearray()
        self.sel = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # In a network namespace of its own, Lambda's port (which nimbus never forwards
        # to the host); sharing the host's, any free one.
        self.listener.bind(("127.0.0.1", RUNTIME_API_PORT if req.get("netns") else 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        # Sharing the host's network, anything on the host could call this port; in a
        # namespace of its own only the environment can.
        self.check_peer = req["network"] and not req.get("netns")
        self.uid = os.getuid()
        self.ready = False
        self.started = 0.0
        # The invocation in flight: its control header and body, and whether the
        # bootstrap has it yet.
        self.invocation: tuple[dict, bytes] | None = None
        self.delivered = False
        self.parked: Connection | None = None
        self.bootstrap_pid = 0
        self.init_failed = False

    # -- control channel ---------------------------------------------------------------

    def send_ctl(self, header: dict, body: bytes = b"") -> None:
        protocol.write_frame(self.ctl, header, body)

    def end_log(self) -> None:
        self.seq += 1
        os.write(LOG_FD, protocol.marker(self.nonce, self.seq))

    def on_ctl(self) -> None:
        data = self.ctl.recv(1 << 20)
        if not data:
            os._exit(0)  # the server is gone: so is this environment
        self.ctl_buf += data
        while len(self.ctl_buf) >= protocol.HEADER.size:
            head_len, body_len = protocol.HEADER.unpack_from(self.ctl_buf)
            total = protocol.HEADER.size + head_len + body_len
            if len(self.ctl_buf) < total:
                return
            start = protocol.HEADER.size
            header = protocol.decode_header(bytes(self.ctl_buf[start:start + head_len]))
            body = bytes(self.ctl_buf[start + head_len:total])
            del self.ctl_buf[:total]
            if header.get("t") == "invoke":
                self.invocation = (header, body)
                self.delivered = False
                if self.parked is not None:
                    conn, self.parked = self.parked, None
                    self.deliver(conn)

    def finish(self, function_error: str | None, payload: bytes) -> None:
        assert self.invocation is not None  # finished only while one is in flight
        tag = self.invocation[0]["tag"]  # which invocation this answers: the server checks
        self.invocation = None
        self.delivered = False
        self.end_log()
        self.send_ctl({"t": "result", "error": function_error, "tag": tag}, payload)

    # -- HTTP --------------------------------------------------------------------------

    def deliver(self, conn: Connection) -> None:
        invocation = self.invocation
        assert invocation is not None  # delivered only while an invocation is pending
        header, body = invocation
        headers = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": header["id"],
            "Lambda-Runtime-Deadline-Ms": str(header["deadline"]),
            "Lambda-Runtime-Invoked-Function-Arn": header["arn"],
        }
        if header.get("trace"):
            headers["Lambda-Runtime-Trace-Id"] = header["trace"]
        if header.get("cc"):
            headers["Lambda-Runtime-Client-Context"] = header["cc"]
        if header.get("ci"):
            headers["Lambda-Runtime-Cognito-Identity"] = header["ci"]
        self.delivered = True
        conn.send(200, headers, body)
        if conn.close_after:  # a client that said Connection: close (urllib does)
            self.drop(conn)

    def route(self, conn: Connection, req: Request) -> tuple[int, dict, bytes] | None:
        if not req.path.startswith(PREFIX):
            return NOT_FOUND
        parts = req.path[len(PREFIX):].strip("/").split("/")
        if parts == ["invocation", "next"]:
            if req.method != "GET":
                return NOT_ALLOWED
            return self.next(conn)
        if parts == ["init", "error"]:
            if req.method != "POST":
                return NOT_ALLOWED
            return self.init_error(req)
        if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
            if req.method != "POST":
                return NOT_ALLOWED
            return self.respond(parts[1], parts[2], req)
        return NOT_FOUND

    def next(self, conn: Connection) -> tuple[int, dict, bytes] | None:
        if not self.ready:
            self.ready = True
            init_ms = (time.perf_counter() - self.started) * 1000
            self.end_log()
            self.req["stages"].append(("init", time.perf_counter()))
            self.send_ctl({"t": "ready", "init_ms": init_ms, "stages": self.req["stages"]})
        if self.invocation is not None and self.delivered:
            return _state_error("Running", "Ready")
        if self.invocation is not None:
            self.deliver(conn)
        else:
            self.parked = conn
        return None

    def respond(self, request_id: str, kind: str, req: Request) -> tuple[int, dict, bytes]:
        if self.invocation is None or not self.delivered:
            wanted = "InvocationResponse" if kind == "response" else "InvocationErrorResponse"
            return _state_error("Ready" if self.ready else "Init", wanted)
        if request_id != self.invocation[0]["id"]:
            return _error(400, "InvalidRequestID", "Invalid request ID")
        if len(req.body) > protocol.MAX_PAYLOAD:
            what = "Response payload" if kind == "response" else "Error payload"
            self.finish("Unhandled", protocol.too_large_error(len(req.body), what))
            return TOO_LARGE
        if kind == "response":
            self.finish(None, req.body)
            return ACCEPTED
        error_type = req.headers.get("lambda-runtime-function-error-type") or "Unhandled"
        payload = req.body if req.body.strip() else json.dumps(
            {"errorMessage": "Unknown application error occurred", "errorType": error_type}
        ).encode()
        self.finish("Unhandled", payload)
        return ACCEPTED

    def init_error(self, req: Request) -> tuple[int, dict, bytes]:
        if self.ready:
            return _state_error("Ready", "InitError")
        error_type = req.headers.get("lambda-runtime-function-error-type") or "Runtime.Unknown"
        error_type = error_type[:MAX_ERROR_TYPE]
        payload = req.body if req.body.strip() else json.dumps(
            {"errorMessage": "Unknown application error occurred", "errorType": error_type}
        ).encode()
        if len(payload) > protocol.MAX_PAYLOAD:
            payload = protocol.too_large_error(len(payload), "Error payload")
        self.init_failed = True
        self.end_log()
        init_ms = (time.perf_counter() - self.started) * 1000
        self.send_ctl({"t": "init_error", "type": error_type, "init_ms": init_ms}, payload)
        return ACCEPTED

    # -- event loop --------------------------------------------------------------------

    def on_accept(self) -> None:
        try:
            sock, addr = self.listener.accept()
        except OSError:
            return
        if self.check_peer and peer_uid(addr[1], self.port) != self.uid:
            sock.close()  # another environment or a host process
            return
        self.sel.register(sock, selectors.EVENT_READ, Connection(sock))

    def on_data(self, conn: Connection) -> None:
        try:
            data = conn.sock.recv(1 << 20)
        except OSError:
            data = b""
        if not data:
            self.drop(conn)
            return
        conn.buf += data
        while True:
            parsed = conn.parse()
            if parsed is None:
                break
            if isinstance(parsed, tuple):
                conn.send(*parsed)
                self.drop(conn)
                return
            response = self.route(conn, parsed)
            if response is None:
                # /next waits for an event: answered (and, after Connection: close,
                # closed) by deliver(); the client sends nothing more meanwhile.
                return
            conn.send(*response)
            if conn.close_after:
                self.drop(conn)
                return

    def drop(self, conn: Connection) -> None:
        if self.parked is conn:
            self.parked = None
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(conn.sock)
        conn.sock.close()

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.bootstrap_pid:
                # Lambda discards the environment when its runtime process exits.
                self.send_ctl({"t": "exit", "status": status})
                os._exit(0)

    def spawn_bootstrap(self) -> bool:
        path = next((p for p in BOOTSTRAPS if os.path.isfile(p) and os.access(p, os.X_OK)), None)
        message = None
        if path is None:
            message = "Couldn't find valid bootstrap(s): [{}]".format(" ".join(BOOTSTRAPS))
        else:
            env = dict(os.environ)
            env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{self.port}"
            try:
                proc = subprocess.Popen([path], env=env, cwd=self.req["task_root"],
                                        stdin=subprocess.DEVNULL)
                self.bootstrap_pid = proc.pid
                proc.returncode = 0  # reaped by reap(), not by Popen
            except OSError as e:
                reason = (e.strerror or str(e)).lower()
                message = f"fork/exec {path}: {reason}"
        if message is None:
            return True
        error = {"errorMessage": message, "errorType": "Runtime.InvalidEntrypoint"}
        self.end_log()
        self.send_ctl({"t": "init_error", "type": "Runtime.InvalidEntrypoint", "init_ms": 0},
                      json.dumps(error).encode())
        return False

    def run(self) -> None:
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.sel.register(self.listener, selectors.EVENT_READ, "accept")
        self.sel.register(self.ctl, selectors.EVENT_READ, "ctl")
        self.sel.register(wake_r, selectors.EVENT_READ, "signal")
        self.started = time.perf_counter()
        if not self.spawn_bootstrap():
            return
        while True:
            for key, _ in self.sel.select():
                what = key.data
                if what == "accept":
                    self.on_accept()
                elif what == "ctl":
                    self.on_ctl()
                elif what == "signal":
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 512)
                    self.reap()
                else:
                    self.on_data(what)


def prepare() -> None:
    """Zygote-time work shared by every environment (nothing yet)."""


def warm_up(warm_dir: str) -> None:
    """In a stem cell: exercise what the server will do first (see ``jail.warm_up``)."""
    json.loads(json.dumps({"t": "ready", "init_ms": 0.0}))
    Connection(socket.socket(socket.AF_INET, socket.SOCK_STREAM)).sock.close()


def main(req: dict) -> None:
    os.environ.clear()
    os.environ.update(req["env"])
    os.chdir(req["task_root"])
    RuntimeApi(req).run()
    os._exit(1)
