"""Unit tests of the sandbox's pure parts; no root needed."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
from pathlib import Path

import pytest

from nimbus.guest import context, protocol, runtime_api, seccomp
from nimbus.sandbox import envvars
from nimbus.sandbox.cgroups import CgroupV1, CgroupV2
from nimbus.sandbox.environment import describe_exit
from nimbus.sandbox.errors import InitError
from nimbus.sandbox.logs import LogPipe
from tests.sandbox.conftest import spec


def test_frames_round_trip() -> None:
    a, b = socket.socketpair()
    with a, b:
        protocol.write_frame(a, {"t": "invoke", "id": "x"}, b"payload")
        big = os.urandom(200_000)
        protocol.write_frame(a, {"t": "result"}, big)
        assert protocol.read_frame(b) == ({"t": "invoke", "id": "x"}, b"payload")
        assert protocol.read_frame(b) == ({"t": "result"}, big)
        a.close()
        with pytest.raises(EOFError):
            protocol.read_frame(b)


def test_marker_depends_on_nonce_and_sequence() -> None:
    assert protocol.marker("n1", 2) != protocol.marker("n2", 2) != protocol.marker("n1", 3)


@pytest.mark.parametrize("status, text", [
    (3 << 8, "exit status 3"),
    (0, "exit status 0"),
    (signal.SIGKILL, "signal: killed"),
    (signal.SIGSEGV, "signal: segmentation fault"),
    (signal.SIGABRT, "signal: aborted"),
])
def test_exit_status_is_described_like_lambda(status: int, text: str) -> None:
    assert describe_exit(status) == text


def test_seccomp_program_is_well_formed() -> None:
    for machine in ("x86_64", "aarch64"):
        code = seccomp.program(machine)
        assert len(code) % 8 == 0 and 0 < len(code) // 8 < 4096
        ops = [struct.unpack("HBBI", code[i:i + 8]) for i in range(0, len(code), 8)]
        # every jump stays inside the program, and it ends in a return
        for index, (op, jt, jf, _k) in enumerate(ops):
            if op & 0x07 == 0x05:  # BPF_JMP
                assert index + 1 + max(jt, jf) < len(ops)
        assert ops[-1][0] == 0x06
    with pytest.raises(OSError):
        seccomp.program("sparc")


def test_environment_variables_reserved_win() -> None:
    s = spec(Path("/x"), environment={"AWS_REGION": "evil", "PATH": "/mine", "A": "1"})
    env = envvars.build(s, python=(3, 12), python_bin="/p/bin")
    assert env["AWS_REGION"] == "us-east-1" and env["PATH"] == "/mine" and env["A"] == "1"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert env["LD_LIBRARY_PATH"].startswith("/p/lib:")
    provided = envvars.build(s, python=None, python_bin=None)
    assert "AWS_EXECUTION_ENV" not in provided and "PYTHONPATH" not in provided


def test_init_error_payload() -> None:
    err = InitError("Runtime.ImportModuleError", "Unable to import module 'a'")
    assert json.loads(err.payload) == {"errorType": "Runtime.ImportModuleError",
                                       "errorMessage": "Unable to import module 'a'"}
    assert err.status == 500 and isinstance(err, Exception)


def test_context_parses_client_context_like_awslambdaric() -> None:
    ctx = context.LambdaContext("rid", 0, "arn", {"custom": {"a": 1}, "env": {"b": 2},
                                                  "client": {"app_title": "t"}, "w3c": {}},
                                {"cognitoIdentityId": "i"})
    assert ctx.client_context.custom == {"a": 1} and ctx.client_context.env == {"b": 2}
    assert ctx.client_context.client.app_title == "t"
    assert ctx.client_context.client.installation_id is None
    assert ctx.identity.cognito_identity_id == "i"
    assert ctx.identity.cognito_identity_pool_id is None
    assert ctx.get_remaining_time_in_millis() == 0
    assert context.LambdaContext("r", 0, "a", None, None).client_context is None


def _connection(raw: bytes) -> runtime_api.Connection:
    conn = runtime_api.Connection(socket.socket())
    conn.buf += raw
    return conn


def test_http_parser_content_length_and_keep_alive() -> None:
    conn = _connection(b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\n\r\n")
    first = conn.parse()
    second = conn.parse()
    assert (first.method, first.path, first.body) == ("POST", "/a", b"abc")
    assert (second.method, second.path, second.body) == ("GET", "/b", b"")
    assert conn.parse() is None
    conn.sock.close()


def test_http_parser_chunked() -> None:
    conn = _connection(b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert conn.parse().body == b"abcde"
    conn.sock.close()


def test_http_parser_waits_for_the_whole_body() -> None:
    conn = _connection(b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nab")
    assert conn.parse() is None
    conn.buf += b"cde"
    assert conn.parse().body == b"abcde"
    conn.sock.close()


def test_cgroup_v1_files(tmp_path: Path) -> None:
    dirs = {c: str(tmp_path / c) for c in ("memory", "pids", "cpu")}
    for d in dirs.values():
        os.makedirs(d)
    mem = Path(dirs["memory"])
    for name in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.swappiness",
                 "cgroup.procs"):
        (mem / name).write_text("")
    for path in ("pids/pids.max", "pids/cgroup.procs", "cpu/cpu.shares", "cpu/cgroup.procs"):
        (tmp_path / path).write_text("")
    (mem / "memory.max_usage_in_bytes").write_text("7340032\n")
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    group = CgroupV1("env-1", dirs)
    group.configure(256, pids_max=77)
    assert (mem / "memory.limit_in_bytes").read_text() == str(256 << 20)
    assert (mem / "memory.memsw.limit_in_bytes").read_text() == str(256 << 20)
    assert (tmp_path / "pids" / "pids.max").read_text() == "77"
    assert (tmp_path / "cpu" / "cpu.shares").read_text() == str(1024 * 256 // 1769)
    assert group.memory_peak_bytes() == 7 << 20 and group.oom_kills() == 2
    assert group.swap_limited()
    assert sorted(group.procs_files) == sorted(f"{d}/cgroup.procs" for d in dirs.values())


def test_cgroup_v2_files(tmp_path: Path) -> None:
    for name in ("memory.max", "memory.swap.max", "cpu.weight", "pids.max", "cgroup.procs"):
        (tmp_path / name).write_text("")
    (tmp_path / "memory.peak").write_text("1048576\n")
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    group = CgroupV2("env-1", str(tmp_path))
    group.configure(1769)
    assert (tmp_path / "memory.max").read_text() == str(1769 << 20)
    assert (tmp_path / "memory.swap.max").read_text() == "0"
    assert (tmp_path / "pids.max").read_text() == "1024"
    assert (tmp_path / "cpu.weight").read_text() == "100"  # one vCPU's worth
    assert group.memory_peak_bytes() == 1 << 20 and group.oom_kills() == 1
    (tmp_path / "cgroup.kill").write_text("")
    group.kill()
    assert (tmp_path / "cgroup.kill").read_text() == "1"


def test_log_pipe_cuts_at_markers() -> None:
    import asyncio

    async def run() -> tuple[bytes, bytes, bytes]:
        r, w = os.pipe()
        pipe = LogPipe(r, asyncio.get_running_loop())
        os.write(w, b"one\n" + protocol.marker("n", 1) + b"two\n")
        first = await pipe.until(protocol.marker("n", 1))
        os.write(w, b"three" + protocol.marker("n", 2))
        second = await pipe.until(protocol.marker("n", 2))
        os.write(w, b"tail")
        os.close(w)
        return first, second, await pipe.rest()

    assert asyncio.run(run()) == (b"one\n", b"two\nthree", b"tail")


def test_environments_resolve_through_the_stub_resolvers_upstream(tmp_path: Path) -> None:
    """systemd-resolved's 127.0.0.53 is not on an environment's own loopback: its copy
    of resolv.conf and its allow-list come from the servers the stub forwards to."""
    from nimbus.sandbox import egress

    stub, upstream, plain = tmp_path / "stub", tmp_path / "upstream", tmp_path / "plain"
    stub.write_text("nameserver 127.0.0.53\noptions edns0\n")
    upstream.write_text("nameserver 10.1.1.1\n")
    plain.write_text("nameserver 10.2.2.2\n")
    assert egress.resolv_conf(stub, upstream) == upstream
    assert egress.resolv_conf(plain, upstream) == plain
    assert egress.resolv_conf(stub, tmp_path / "absent") == stub  # nothing better
    assert [str(a) for a in egress.resolvers(upstream)] == ["10.1.1.1"]

