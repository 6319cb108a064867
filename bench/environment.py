"""The machine and version record that every results file carries."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = ("jax", "jaxlib", "jaxloss", "optax", "numpy", "scikit-learn", "matplotlib", "torch")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_state() -> dict[str, Any] | None:
    """Commit of the source tree and whether it has uncommitted changes (None outside git)."""
    root = Path(__file__).resolve().parents[1]
    try:
        run = partial(subprocess.run, cwd=root, capture_output=True, text=True, timeout=10)
        head = run(["git", "rev-parse", "HEAD"])
        status = run(["git", "status", "--porcelain", "--untracked-files=no"])
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def environment() -> dict[str, Any]:
    """Date, package versions, machine, JAX backend, git state and timing-relevant settings."""
    import jax

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {name: _version(name) for name in _PACKAGES},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": cores,
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "git": _git_state(),
        # Settings that change timings: XLA's flags, and glibc's malloc tunables (whether a
        # fresh buffer over 32 MiB is mmap-ed and so pays first-touch page faults).
        "env": {k: os.environ.get(k) for k in ("XLA_FLAGS", "GLIBC_TUNABLES", "OMP_NUM_THREADS")},
    }
