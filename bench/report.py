"""Machine and version record, Markdown tables and the JSON results files."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
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


def machine_line(env: dict[str, Any]) -> str:
    v = env["versions"]
    return (
        f"{env['cpu']}, {env['cores']} cores, {env['jax_backend']}; jax {v['jax']}, "
        f"optax {v['optax']}, torch {v['torch'] or '-'}; {env['date'][:10]}"
    )


def markdown_table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    """A fixed-width Markdown table; columns in `right` (default: all but the first) align right."""
    right = set(range(1, len(headers))) if right is None else right
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        padded = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w - 1) + ":" if i in right else "-" * w for i, w in enumerate(widths)]
    return "\n".join([line(headers), line(rule), *(line(r) for r in rows)])


def fmt(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.1f}" if seconds >= 0.01 else f"{seconds * 1e3:.2f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}x"


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no inf / NaN
    if hasattr(obj, "item"):  # NumPy scalars
        return _plain(obj.item())
    return obj


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(_plain(data), indent=1) + "\n")
