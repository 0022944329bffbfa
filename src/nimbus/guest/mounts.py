"""The root filesystem an execution environment sees.

Two stages, so that a cold start mounts as little as possible:

* ``prepare_base`` runs once in each zygote, inside the zygote's own mount namespace:
  a tmpfs with read-only bind mounts of what every runtime needs (``/usr``, the Python
  prefixes, a generated ``/etc``), a minimal ``/dev`` and empty mount points; then the
  tmpfs itself is made read-only.
* ``enter`` runs in each new environment (a fresh copy of that namespace): its private
  ``/tmp``, the code read-only at ``/var/task``, layers at ``/opt``, a ``/proc`` for its
  PID namespace, then ``pivot_root`` into the base and detaching the host's tree, so
  nothing else of the host stays reachable (``enter_root``).
* A stem cell splits it: ``enter_root`` while it idles, then ``attach_function`` with
  the code and layers as detached mounts the server made (``nimbus.sandbox.
  function_mounts``): ``pivot_root`` costs in proportion to the tasks on the host, and
  no cold start should pay that.

``/tmp`` is, by default, a file system of its own on disk (as on Lambda), made and
mounted by the server ahead of time (``nimbus.sandbox.tmpdisk``) and handed over as a
descriptor of a detached mount: attaching it is one ``move_mount``. With
``tmp_storage = "memory"`` it is a tmpfs of EphemeralStorage size instead, whose pages
count against the environment's memory limit. Runs in the zygote (Python 3.9+): standard
library only.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import stat

from nimbus.guest import libc

RO = libc.MS_RDONLY | libc.MS_NOSUID | libc.MS_NODEV
# (name, major, minor): what Lambda's /dev offers, minus anything with state.
DEVICES = [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
           ("urandom", 1, 9), ("tty", 5, 0)]
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
             "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}
MOUNT_POINTS = ["proc", "dev", "tmp", "etc", "var/task", "var/runtime", "opt"]
TOP_LEVEL = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"]
ETC_FILES = ["hosts", "resolv.conf", "nsswitch.conf", "ld.so.cache", "protocols",
             "services", "host.conf", "gai.conf", "os-release", "mime.types"]
SSL_FILES = ["certs", "openssl.cnf"]  # never /etc/ssl/private
# move_mount(2), Linux 5.2+ (one number on x86_64 and aarch64: the unified syscall table).
_SYS_MOVE_MOUNT = 429
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_AT_FDCWD = -100
_libc = ctypes.PyDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def base_layout(prefixes: list[str]) -> dict:
    """What ``prepare_base`` mounts (computed by the server, plain JSON)."""
    binds = ["/usr"]
    links = {}
    for name in TOP_LEVEL:
        path = "/" + name
        if os.path.islink(path):
            links[path] = os.readlink(path)
        elif os.path.isdir(path):
            binds.append(path)
    for prefix in prefixes:
        real = os.path.realpath(prefix)
        if not any(real == b or real.startswith(b + "/") for b in binds):
            binds.append(real)
    return {"binds": binds, "links": links}


def write_etc(target: str, uid_first: int, uid_count: int) -> None:
    """A minimal /etc: copies of what name resolution and TLS read, and passwd/group
    entries for the sandbox users (Lambda names its user sbx_user1051)."""
    os.makedirs(target, mode=0o755, exist_ok=True)
    for name in ETC_FILES:
        src = "/etc/" + name
        dst = os.path.join(target, name)
        if os.path.islink(src):
            if not os.path.lexists(dst):
                os.symlink(os.readlink(src), dst)
        elif os.path.isfile(src):
            shutil.copyfile(src, dst)
            os.chmod(dst, 0o644)
    ssl = os.path.join(target, "ssl")
    os.makedirs(ssl, mode=0o755, exist_ok=True)
    for name in SSL_FILES:
        src, dst = "/etc/ssl/" + name, os.path.join(ssl, name)
        if os.path.isdir(src) and not os.path.exists(dst):
            shutil.copytree(src, dst, symlinks=True)
        elif os.path.isfile(src):
            shutil.copyfile(src, dst)
    localtime = os.path.join(target, "localtime")
    if not os.path.lexists(localtime):
        os.symlink("/usr/share/zoneinfo/UTC", localtime)
    users = ["root:x:0:0:root:/root:/sbin/nologin"]
    groups = ["root:x:0:"]
    for uid in range(uid_first, uid_first + uid_count):
        users.append(f"sbx_user{uid}:x:{uid}:{uid}::/tmp:/sbin/nologin")
        groups.append(f"sbx_user{uid}:x:{uid}:")
    users.append("nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin")
    groups.append("nogroup:x:65534:")
    for name, lines in (("passwd", users), ("group", groups)):
        with open(os.path.join(target, name), "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(os.path.join(target, name), 0o644)


def _bind_ro(source: str, target: str, recursive: bool = False) -> None:
    flags = libc.MS_BIND | (libc.MS_REC if recursive else 0)
    libc.mount(source, target, None, flags)
    # The read-only flag of a bind mount only takes with a remount.
    libc.mount(None, target, None, libc.MS_BIND | libc.MS_REMOUNT | RO)


def _makedirs(path: str) -> None:
    # Parents 0755 even where the host has 0700 (/root of pyenv): the sandbox user
    # must traverse to the interpreter, and only the bound leaf is visible anyway.
    if not os.path.isdir(path):
        _makedirs(os.path.dirname(path))
        os.mkdir(path, 0o755)
        os.chmod(path, 0o755)


def prepare_base(root: str, layout: dict, etc_dir: str) -> None:
    """Build the shared read-only base at ``root`` in a private mount namespace."""
    libc.unshare(libc.CLONE_NEWNS)
    libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
    libc.mount("tmpfs", root, "tmpfs", libc.MS_NOSUID, "mode=0755,size=4m")
    for rel in MOUNT_POINTS:
        _makedirs(os.path.join(root, rel))
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    for src in layout["binds"]:
        target = root + src
        _makedirs(target)
        _bind_ro(src, target)
    for path, dest in layout["links"].items():
        os.symlink(dest, root + path)
    _bind_ro(etc_dir, os.path.join(root, "etc"))
    dev = os.path.join(root, "dev")
    for name, major, minor in DEVICES:
        path = os.path.join(dev, name)
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        os.chmod(path, 0o666)
    for name, dest in DEV_LINKS.items():
        os.symlink(dest, os.path.join(dev, name))
    libc.mount(None, root, None, libc.MS_REMOUNT | libc.MS_RDONLY | libc.MS_NOSUID)


def mount_proc(root: str) -> None:
    """A /proc for the environment's own PID namespace (before any function is known)."""
    libc.mount("proc", root + "/proc", "proc", libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC)


def attach(mount_fd: int, target: str) -> None:
    """Attach a detached mount (an ``fsmount`` descriptor made by the server) at
    ``target``, and close the descriptor."""
    try:
        if _libc.syscall(_SYS_MOVE_MOUNT, mount_fd, b"", _AT_FDCWD, os.fsencode(target),
                         _MOVE_MOUNT_F_EMPTY_PATH) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"move_mount to {target}: {os.strerror(err)}")
    finally:
        os.close(mount_fd)


def warm_up() -> None:
    """Run ``attach``'s call path without its effect (a stem cell, while idle)."""
    _libc.syscall(_SYS_MOVE_MOUNT, -1, b"", _AT_FDCWD, b"/", _MOVE_MOUNT_F_EMPTY_PATH)


def enter(root: str, code_dir: str, layer_dirs: list[str], tmp_mb: int,
          tmp_fd: int | None = None) -> None:
    """In a new mount namespace copied from the zygote's (with /proc mounted): the
    function's mounts, then make the base the root and drop the host's tree. ``tmp_fd``:
    the disk-backed /tmp made by the server; None: a tmpfs of ``tmp_mb``."""
    _mount_tmp(root + "/tmp", tmp_mb, tmp_fd)
    _bind_ro(code_dir, root + "/var/task")
    if len(layer_dirs) == 1:
        _bind_ro(layer_dirs[0], root + "/opt")
    elif layer_dirs:
        # overlayfs: the leftmost lower layer wins, and later Lambda layers win.
        lower = ":".join(reversed(layer_dirs))
        libc.mount("overlay", root + "/opt", "overlay", RO, "lowerdir=" + lower)
    enter_root(root)


def enter_root(root: str) -> None:
    """Make the base at ``root`` this namespace's root and detach the host's tree, so
    nothing else of the host stays reachable. A stem cell does it while it idles (then
    ``attach_function``): ``pivot_root`` walks every task on the host (chroot_fs_refs),
    milliseconds once thousands of environments run."""
    os.chdir(root)
    # pivot_root(".", ".") stacks the old root under the new one; unmounting "." then
    # detaches the host's whole tree (runc's trick: no put_old directory needed).
    libc.pivot_root(".", ".")
    libc.umount2(".", libc.MNT_DETACH)
    os.chdir("/")


# Where each detached mount the server hands a stem cell goes (nimbus.sandbox.function_mounts).
MOUNT_TARGETS = {"tmp": "/tmp", "code": "/var/task", "opt": "/opt"}


def attach_function(mount_fds: dict[str, int], tmp_mb: int) -> None:
    """After ``enter_root``: attach the function's files, made by the server as detached
    mounts (``code``, ``opt`` if it has layers, ``tmp`` unless /tmp is a tmpfs of
    ``tmp_mb``), and close their descriptors."""
    _mount_tmp("/tmp", tmp_mb, mount_fds.get("tmp"))
    for name, fd in mount_fds.items():
        if name != "tmp":
            attach(fd, MOUNT_TARGETS[name])


def _mount_tmp(target: str, tmp_mb: int, tmp_fd: int | None) -> None:
    if tmp_fd is not None:
        attach(tmp_fd, target)
    else:
        libc.mount("tmpfs", target, "tmpfs", libc.MS_NOSUID | libc.MS_NODEV,
                   f"mode=1777,size={tmp_mb}m")
