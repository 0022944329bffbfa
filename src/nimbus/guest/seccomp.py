"""A seccomp filter that closes the kernel interfaces a function never needs.

Namespaces, dropped capabilities and a non-root uid already stop most of these; the
filter removes the remaining attack surface that an unprivileged user still reaches on
a stock kernel: creating user namespaces (which hand back capabilities inside them),
the new mount API, keyrings, BPF, perf, userfaultfd, io_uring and kernel modules. The
list follows Docker's default profile in spirit. Denied calls fail with EPERM; clone3
fails with ENOSYS so that glibc falls back to clone, whose flags a filter can inspect.

Runs in the zygote's child (Python 3.9+): standard library only.
"""

from __future__ import annotations

import ctypes
import errno
import struct

from nimbus.guest import libc

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

# name: (x86_64, aarch64)
_DENIED = {
    "unshare": (272, 97),
    "setns": (308, 268),
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "chroot": (161, 51),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fspick": (433, 433),
    "mount_setattr": (442, 442),
    "keyctl": (250, 219),
    "add_key": (248, 217),
    "request_key": (249, 218),
    "bpf": (321, 280),
    "perf_event_open": (298, 241),
    "userfaultfd": (323, 282),
    "kexec_load": (246, 104),
    "kexec_file_load": (320, 294),
    "init_module": (175, 105),
    "finit_module": (313, 273),
    "delete_module": (176, 106),
    "reboot": (169, 142),
    "swapon": (167, 224),
    "swapoff": (168, 225),
    "acct": (163, 89),
    "quotactl": (179, 60),
    "syslog": (103, 116),
    "open_by_handle_at": (304, 265),
    "lookup_dcookie": (212, 18),
    "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
}
_CLONE = (56, 220)
_CLONE3 = (435, 435)
_NAMESPACE_FLAGS = (
    libc.CLONE_NEWNS | libc.CLONE_NEWCGROUP | libc.CLONE_NEWUTS | libc.CLONE_NEWIPC
    | libc.CLONE_NEWUSER | libc.CLONE_NEWPID | libc.CLONE_NEWNET
)

# Classic BPF opcodes.
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
_ALLOW = 0x7FFF0000
_KILL_PROCESS = 0x80000000
_ERRNO = 0x00050000

_OFF_NR = 0
_OFF_ARCH = 4
_OFF_ARG0 = 16  # low 32 bits on little-endian machines


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


# A SnapStart template (``nimbus.guest.template``) runs user init holding capabilities
# in its own user namespace; its filter lets it do only what forking an environment
# needs beyond the strict one: unshare(CLONE_NEWNS) exactly, and move_mount (attaching a
# /tmp the server mounted). mount, the rest of the mount API, setns and every other
# namespace (user namespaces above all) stay denied.
_TEMPLATE_ALLOWED = ("unshare", "move_mount")


def program(machine: str = libc.MACHINE, template: bool = False) -> bytes:
    """The filter as raw ``struct sock_filter`` entries; ``template``: the SnapStart
    template's variant (see ``_TEMPLATE_ALLOWED``)."""
    if machine not in _AUDIT_ARCH:
        raise OSError(f"nimbus sandbox: no seccomp filter for {machine!r}")
    col = 0 if machine == "x86_64" else 1
    skipped = _TEMPLATE_ALLOWED if template else ()
    denied = sorted({numbers[col] for name, numbers in _DENIED.items() if name not in skipped})
    deny_eperm = _op(_RET_K, _ERRNO | errno.EPERM)
    ops = [
        _op(_LD_W_ABS, _OFF_ARCH),
        _op(_JEQ_K, _AUDIT_ARCH[machine], 1, 0),
        _op(_RET_K, _KILL_PROCESS),  # another ABI (i386, x32 via int 0x80): no way round
        _op(_LD_W_ABS, _OFF_NR),
    ]
    if machine == "x86_64":
        ops += [_op(_JGE_K, 0x40000000, 0, 1), deny_eperm]  # x32 numbers
    ops += [_op(_JEQ_K, _CLONE3[col], 0, 1), _op(_RET_K, _ERRNO | errno.ENOSYS)]
    if template:
        # unshare: allowed with exactly CLONE_NEWNS (all 64 bits of the flags), else EPERM.
        ops += [
            _op(_JEQ_K, _DENIED["unshare"][col], 0, 6),
            _op(_LD_W_ABS, _OFF_ARG0 + 4),
            _op(_JEQ_K, 0, 0, 2),
            _op(_LD_W_ABS, _OFF_ARG0),
            _op(_JEQ_K, libc.CLONE_NEWNS, 1, 0),
            deny_eperm,
            _op(_RET_K, _ALLOW),
        ]
    for nr in denied:
        ops += [_op(_JEQ_K, nr, 0, 1), deny_eperm]
    ops += [
        _op(_JEQ_K, _CLONE[col], 1, 0),
        _op(_RET_K, _ALLOW),
        _op(_LD_W_ABS, _OFF_ARG0),
        _op(_JSET_K, _NAMESPACE_FLAGS, 0, 1),
        deny_eperm,
        _op(_RET_K, _ALLOW),
    ]
    return b"".join(ops)


_prepared: tuple[object, _SockFprog] | None = None


def _build(template: bool) -> tuple[object, _SockFprog]:
    code = program(template=template)
    buffer = ctypes.create_string_buffer(code, len(code))
    return (buffer, _SockFprog(len(code) // 8, ctypes.addressof(buffer)))


def prepare() -> tuple[object, _SockFprog]:
    """Build the filter once (in the zygote), so that children only load it."""
    global _prepared
    _prepared = _build(False)
    return _prepared


def install() -> None:
    """Load the filter into this process; needs PR_SET_NO_NEW_PRIVS first."""
    _buffer, prog = _prepared or prepare()
    libc.prctl_pointer(libc.PR_SET_SECCOMP, libc.SECCOMP_MODE_FILTER, ctypes.addressof(prog))


def install_template() -> None:
    """Load the SnapStart template's filter (needs PR_SET_NO_NEW_PRIVS first). The
    strict filter is built before, so that forked environments only load it."""
    if _prepared is None:
        prepare()
    buffer, prog = _build(True)
    libc.prctl_pointer(libc.PR_SET_SECCOMP, libc.SECCOMP_MODE_FILTER, ctypes.addressof(prog))
    _keep.append(buffer)


_keep: list[object] = []
