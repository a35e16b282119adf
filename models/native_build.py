"""Build a C source of ``csrc/`` into a shared library with this machine's compiler, once, and load it.

Why: the native kernels (:mod:`~agentkit.models.native_attention`, :mod:`~agentkit.models.fused_decode`) need
no torch headers and no build step at install time: a source is compiled on first use (about half a second)
with ``$CC``, else ``cc`` / ``gcc`` / ``clang``, at ``-O3 -march=native -fopenmp`` where the compiler takes it
(lesser flag sets otherwise), into ``$AGENTKIT_CACHE_DIR/kernels``: one file per hash of source (with the
headers of ``csrc/``), compiler version, flags and CPU flags, written by an atomic rename so concurrent processes
never load half a file. Where no compiler is found, the build fails, or ``AGENTKIT_NATIVE_KERNELS=0`` is set,
:func:`native_library` returns None with the reason logged, and every caller keeps its torch path.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["CSRC", "FLAG_SETS", "native_library"]

_log = logging.getLogger(__name__)

#: Where the C sources live (package data).
CSRC = Path(__file__).with_name("csrc")
#: Flag sets tried in order: the first that compiles is used (not every compiler takes ``-march=native``).
FLAG_SETS = (("-O3", "-march=native", "-fopenmp"), ("-O3", "-fopenmp"), ("-O3",))


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _kernel_dir() -> Path:
    from agentkit.models.embedded import _cache_root

    return _cache_root(None) / "kernels"


def _build(compiler: str, directory: Path, source: Path, extra: tuple[str, ...]) -> Path | None:
    code = b"\0".join(path.read_bytes() for path in (source, *sorted(CSRC.glob("*.h"))))  # the shared headers too
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    for base in FLAG_SETS:
        flags = [*base, *extra]
        key = hashlib.sha256(b"\0".join([code, version.encode(), " ".join(flags).encode(),
                                         _cpu_flags().encode()])).hexdigest()[:16]
        target = directory / f"{source.stem}-{key}.so"
        if target.is_file():
            return target
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory) as scratch:
            built = Path(scratch) / target.name
            result = subprocess.run([compiler, *flags, "-fPIC", "-shared", str(source), "-o", str(built), "-lm"],
                                    capture_output=True, text=True, timeout=120)
            if result.returncode == 0:
                os.replace(built, target)
                return target
            _log.debug("native %s: %s %s failed: %s", source.stem, compiler, " ".join(flags), result.stderr[-500:])
    return None


@functools.cache
def native_library(name: str, extra_flags: tuple[str, ...] = ()) -> ctypes.CDLL | None:
    """``csrc/<name>.c`` built (or found built) for this machine and loaded; None, with the reason logged,
    where it cannot be had here. ``extra_flags`` are added to every flag set (numerics, not speed)."""
    if os.environ.get("AGENTKIT_NATIVE_KERNELS", "1") == "0":
        _log.info("native %s: off (AGENTKIT_NATIVE_KERNELS=0)", name)
        return None
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        _log.info("native %s: no C compiler (set CC) - using the torch path", name)
        return None
    source = CSRC / f"{name}.c"
    try:
        path = _build(compiler, _kernel_dir(), source, tuple(extra_flags))
        library = ctypes.CDLL(str(path)) if path is not None else None
    except (OSError, subprocess.SubprocessError) as exc:
        _log.info("native %s: could not build or load (%s) - using the torch path", name, exc)
        return None
    if library is None:
        _log.info("native %s: %s could not compile %s - using the torch path", name, compiler, source)
        return None
    _log.info("native %s: %s", name, path)
    return library
