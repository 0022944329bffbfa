"""Code that runs inside an execution environment: the zygote's fork server, the jail
(namespaces, mounts, privileges, seccomp), the control protocol, the Python runtime loop,
the Runtime API server for ``provided`` runtimes, and the Lambda context.

Rule of this package: the standard library only, Python 3.9-compatible, and nothing else
from nimbus (the zygote loads it through a stub package, without nimbus' dependencies).
The host side imports from here (the protocol, mount layout, libc constants); never the
other way round.
"""
