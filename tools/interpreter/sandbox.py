"""What confines a local kernel: resource limits, a process cap, no network, a clean environment.

* Address space, file size, CPU time and core dumps: ``setrlimit`` in the kernel process before it starts.
* Number of processes (threads count too): a pids cgroup per session when we may create one (root, cgroup v1
  ``/sys/fs/cgroup/pids`` or a v2 hierarchy with the pids controller); otherwise ``RLIMIT_NPROC`` set to the
  user's current process count plus the cap. ``RLIMIT_NPROC`` does not bind root, which is why root uses cgroups.
* Network: a new network namespace with nothing up (needs root); the kernel talks to us over Unix sockets.
* Environment: variables that look like secrets are dropped before the kernel sees them.

This is a guard rail against runaway code (loops, memory, fork bombs, big files, accidental network access), not
a security boundary: the kernel runs as the same user, sees the same filesystem and the same Linux kernel.
Use the E2B backend for untrusted code.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|COOKIE|SESSION|AUTH|PRIVATE", re.IGNORECASE)
_CGROUP_V1 = Path("/sys/fs/cgroup/pids")
_CGROUP_V2 = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class SandboxLimits:
    """Limits for one kernel. ``None`` leaves a limit off."""

    memory_bytes: int | None = 2 << 30
    max_processes: int | None = 64
    max_file_bytes: int | None = 256 << 20
    cpu_seconds: int | None = 3600
    network: bool = False

    def rlimits(self) -> dict[str, int]:
        limits = {"RLIMIT_CORE": 0}
        if self.memory_bytes is not None:
            limits["RLIMIT_AS"] = int(self.memory_bytes)
        if self.max_file_bytes is not None:
            limits["RLIMIT_FSIZE"] = int(self.max_file_bytes)
        if self.cpu_seconds is not None:
            limits["RLIMIT_CPU"] = int(self.cpu_seconds)
        return limits


def can_isolate_network() -> bool:
    """A new network namespace needs root (CAP_SYS_ADMIN) on Linux."""
    return sys.platform.startswith("linux") and os.geteuid() == 0


def scrubbed_environment(workdir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The parent's environment minus anything that looks like a secret, plus the kernel's own settings."""
    env = {k: v for k, v in os.environ.items() if not SECRET.search(k)}
    for name in ("PYTHONPATH", "PYTHONSTARTUP", "JPY_PARENT_PID", "AGENTKIT_TRACING"):
        env.pop(name, None)
    from platformdirs import user_cache_dir

    mpl_cache = Path(user_cache_dir("agentkit")) / "matplotlib"  # shared: the font cache is built once
    mpl_cache.mkdir(parents=True, exist_ok=True)
    env.update({
        "HOME": str(workdir),
        "TMPDIR": str(workdir / ".tmp"),
        "IPYTHONDIR": str(workdir / ".ipython"),
        "MPLCONFIGDIR": str(mpl_cache),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "OPENBLAS_NUM_THREADS": "1",  # threads count against the process cap
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2",  # keeps virtual memory (what RLIMIT_AS counts) close to what is used
        "PYTHONNOUSERSITE": "1",
        "PYTHONUNBUFFERED": "1",
    })
    (workdir / ".tmp").mkdir(parents=True, exist_ok=True)
    env.update(extra or {})
    return env


class ProcessCap:
    """Caps how many processes (and threads) one kernel may have, by the best means available here."""

    def __init__(self, limit: int | None):
        self.limit = limit
        self.cgroup: Path | None = None
        self.method = "none"
        if limit is None:
            return
        if os.geteuid() == 0:
            self.cgroup = self._make_cgroup(limit)
            if self.cgroup is not None:
                self.method = "cgroup"
                return
            self.method = "none (root: RLIMIT_NPROC would not bind, and no pids cgroup could be made)"
        else:
            self.method = "rlimit"

    @staticmethod
    def _make_cgroup(limit: int) -> Path | None:
        name = f"agentkit-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        for root in (_CGROUP_V1, _CGROUP_V2):
            if not (root / "cgroup.procs").exists():
                continue
            if root == _CGROUP_V2 and "pids" not in _read(root / "cgroup.subtree_control"):
                continue
            path = root / name
            try:
                path.mkdir()
                (path / "pids.max").write_text(str(limit))
                return path
            except OSError:
                shutil.rmtree(path, ignore_errors=True)
        return None

    def rlimits(self) -> dict[str, int]:
        """``RLIMIT_NPROC`` for the non-root case: it counts all of the user's processes, so add those."""
        if self.method != "rlimit" or self.limit is None:
            return {}
        return {"RLIMIT_NPROC": _user_process_count() + self.limit}

    def kill_all(self) -> None:
        """SIGKILL every process still in the cgroup (children that left the kernel's process group too)."""
        if self.cgroup is None:
            return
        for _ in range(20):
            pids = [int(p) for p in _read(self.cgroup / "cgroup.procs").split()]
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass

    def close(self) -> None:
        if self.cgroup is None:
            return
        self.kill_all()
        for _ in range(50):
            try:
                self.cgroup.rmdir()
                break
            except OSError:
                import time

                time.sleep(0.02)
        self.cgroup = None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _user_process_count() -> int:
    uid, count = os.getuid(), 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += int(_read(Path(entry.path) / "status").split("Threads:")[1].split()[0])
            except (OSError, IndexError, ValueError):
                continue
    return count
