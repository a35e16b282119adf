"""Start a kernel inside its limits: run with ``python -I -S _launch.py CONFIG -- KERNEL-COMMAND...``.

Standard library only and no site packages, so it starts in milliseconds. It puts itself in a new session
(process group), joins the session's pids cgroup when one was made, sets the resource limits, optionally moves
into a network namespace with no interfaces up, and then replaces itself with the kernel: the limits bind the
kernel and everything it starts.
"""

import json
import os
import resource
import sys

CLONE_NEWNET = 0x40000000


def main() -> None:
    config = json.loads(sys.argv[1])
    command = sys.argv[sys.argv.index("--") + 1:]
    os.setsid()
    if config.get("cgroup"):
        with open(os.path.join(config["cgroup"], "cgroup.procs"), "w") as procs:
            procs.write(str(os.getpid()))
    for name, value in config.get("rlimits", {}).items():
        resource.setrlimit(getattr(resource, name), (value, value))
    if config.get("no_network"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) != 0:
            sys.stderr.write(f"agentkit: could not cut the network (errno {ctypes.get_errno()})\n")
            sys.exit(70)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
